//! Reading one pipeline file: its keys, schedule, steps, sensors, backoff and alerts, each
//! checked with the file and line of a mistake, and the steps' dependencies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::Duration;

use serde_json::Value as Json;
use strata_common::did_you_mean;

use super::{
    Action, Alerts, Backoff, OnFailure, OnInterrupt, Pipeline, Schedule, Sensor, Sla, Step,
    parse_duration,
};

/// A parsed value, or the text to find the mistake's line by and the message.
type Parsed<T> = std::result::Result<T, (String, String)>;

const ALERT_EVENTS: [&str; 4] = ["failure", "retries_exhausted", "sla_miss", "success"];

pub(super) fn parse(stem: &str, doc: &Json, file: &Path) -> Parsed<Pipeline> {
    let Json::Object(m) = doc else {
        return Err((
            String::new(),
            "a pipeline must be a mapping with `steps`".into(),
        ));
    };
    const KEYS: [&str; 7] = [
        "name",
        "description",
        "schedule",
        "steps",
        "alerts",
        "max_active_runs",
        "on_interrupt",
    ];
    unknown_keys(m, &KEYS, "a pipeline")?;
    let name = match m.get("name") {
        None => stem.to_string(),
        Some(Json::String(s)) if valid_name(s) => s.clone(),
        Some(other) => {
            return Err((
                "name:".into(),
                format!("`name: {other}` is not a pipeline name: use letters, digits, `_` and `-`"),
            ));
        }
    };
    let schedule = match m.get("schedule") {
        None | Some(Json::Null) => None,
        Some(s) => Some(schedule(s)?),
    };
    let Some(Json::Array(list)) = m.get("steps") else {
        return Err((
            "steps".into(),
            "a pipeline needs `steps:`, a list of steps".into(),
        ));
    };
    if list.is_empty() {
        return Err(("steps".into(), "`steps:` is empty".into()));
    }
    let mut steps: Vec<Step> = Vec::with_capacity(list.len());
    for (i, s) in list.iter().enumerate() {
        let previous = steps.last().map(|p: &Step| p.name.clone());
        let step = step(s, i, previous)?;
        if steps.iter().any(|o| o.name == step.name) {
            return Err((
                format!("name: {}", step.name),
                format!("two steps are named `{}`", step.name),
            ));
        }
        steps.push(step);
    }
    check_dependencies(&steps)?;
    let alerts = match m.get("alerts") {
        None | Some(Json::Null) => Alerts::default(),
        Some(a) => alerts(a)?,
    };
    let max_active_runs = match m.get("max_active_runs") {
        None => 1,
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n as usize)
            .ok_or_else(|| {
                (
                    "max_active_runs".into(),
                    format!("`max_active_runs: {v}` must be a whole number, 1 or more"),
                )
            })?,
    };
    let on_interrupt = match m.get("on_interrupt").and_then(Json::as_str) {
        None if !m.contains_key("on_interrupt") => OnInterrupt::Resume,
        Some("resume") => OnInterrupt::Resume,
        Some("restart") => OnInterrupt::Restart,
        Some("fail") => OnInterrupt::Fail,
        _ => {
            return Err((
                "on_interrupt".into(),
                format!(
                    "`on_interrupt: {}` must be `resume`, `restart` or `fail`",
                    m["on_interrupt"]
                ),
            ));
        }
    };
    Ok(Pipeline {
        name,
        file: file.to_path_buf(),
        schedule,
        steps,
        alerts,
        max_active_runs,
        on_interrupt,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn unknown_keys(m: &serde_json::Map<String, Json>, keys: &[&str], what: &str) -> Parsed<()> {
    for k in m.keys() {
        if !keys.contains(&k.as_str()) {
            return Err((
                format!("{k}:"),
                format!(
                    "`{k}` is not a key of {what}{}; the keys are {}",
                    did_you_mean(k, keys.iter().copied()),
                    keys.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

fn schedule(s: &Json) -> Parsed<Schedule> {
    let m = match s {
        // `schedule: "0 6 * * *"`: a cron expression alone.
        Json::String(cron) => {
            let mut m = serde_json::Map::new();
            m.insert("cron".into(), Json::String(cron.clone()));
            m
        }
        Json::Object(m) => m.clone(),
        other => {
            return Err((
                "schedule".into(),
                format!(
                    "`schedule: {other}` must be a cron expression or a mapping with `cron`, `timezone`, `catchup`, `after`"
                ),
            ));
        }
    };
    unknown_keys(&m, &["cron", "timezone", "catchup", "after"], "a schedule")?;
    let timezone = match m.get("timezone") {
        None => chrono_tz::UTC,
        Some(Json::String(tz)) => tz.parse::<chrono_tz::Tz>().map_err(|_| {
            (
                tz.clone(),
                format!(
                    "`timezone: {tz}` is not a time zone: use an IANA name such as UTC, Europe/Berlin or America/New_York"
                ),
            )
        })?,
        Some(other) => {
            return Err((
                "timezone".into(),
                format!("`timezone: {other}` must be a time zone name"),
            ));
        }
    };
    let cron = match m.get("cron") {
        None | Some(Json::Null) => None,
        Some(Json::String(c)) => {
            crate::cron::parse(c).map_err(|e| (c.clone(), e))?;
            Some(c.clone())
        }
        Some(other) => {
            return Err((
                "cron".into(),
                format!("`cron: {other}` must be a quoted cron expression such as \"0 6 * * *\""),
            ));
        }
    };
    let after = names(m.get("after"), "after")?;
    if cron.is_none() && after.is_empty() {
        return Err((
            "schedule".into(),
            "a schedule needs a `cron` expression or `after` (other pipelines)".into(),
        ));
    }
    Ok(Schedule {
        cron,
        timezone,
        catchup: flag(m.get("catchup"), "catchup")?,
        after,
    })
}

fn flag(v: Option<&Json>, key: &str) -> Parsed<bool> {
    match v {
        None | Some(Json::Null) => Ok(false),
        Some(Json::Bool(b)) => Ok(*b),
        Some(other) => Err((
            format!("{key}:"),
            format!("`{key}: {other}` must be true or false"),
        )),
    }
}

/// A name or a list of names.
fn names(v: Option<&Json>, key: &str) -> Parsed<Vec<String>> {
    match v {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::String(s)) => Ok(vec![s.clone()]),
        Some(Json::Array(items)) => items
            .iter()
            .map(|i| {
                i.as_str().map(str::to_string).ok_or_else(|| {
                    (
                        format!("{key}:"),
                        format!("`{key}` lists names; {i} is not one"),
                    )
                })
            })
            .collect(),
        Some(other) => Err((
            format!("{key}:"),
            format!("`{key}: {other}` must be a name or a list of names"),
        )),
    }
}

const STEP_KEYS: [&str; 15] = [
    "name",
    "after",
    "retries",
    "backoff",
    "timeout",
    "on_failure",
    "poke_interval",
    "ingest",
    "build",
    "run",
    "test",
    "snapshot",
    "seed",
    "sensor",
    "command",
];

const STEP_TYPES: [&str; 8] = [
    "ingest", "build", "run", "test", "snapshot", "seed", "sensor", "command",
];

fn step(s: &Json, index: usize, previous: Option<String>) -> Parsed<Step> {
    let Json::Object(m) = s else {
        return Err((
            "steps".into(),
            format!(
                "step {} must be a mapping with a `name` and what it does",
                index + 1
            ),
        ));
    };
    let name = match m.get("name") {
        Some(Json::String(n)) if valid_name(n) => n.clone(),
        Some(other) => {
            return Err((
                format!("{other}"),
                format!("`name: {other}` is not a step name: use letters, digits, `_` and `-`"),
            ));
        }
        None => {
            return Err((
                first_key_needle(m),
                format!("step {} has no `name`", index + 1),
            ));
        }
    };
    let at = |msg: String| (format!("name: {name}"), format!("step `{name}`: {msg}"));
    for k in m.keys() {
        if !STEP_KEYS.contains(&k.as_str()) {
            let types = did_you_mean(k, STEP_TYPES);
            return Err((
                format!("{k}:"),
                format!(
                    "step `{name}`: `{k}` is not a step type or setting{types}; a step is one of {}",
                    STEP_TYPES.join(", ")
                ),
            ));
        }
    }
    let given: Vec<&str> = STEP_TYPES
        .iter()
        .copied()
        .filter(|t| m.contains_key(*t))
        .collect();
    let kind = match given.as_slice() {
        [one] => *one,
        [] => {
            return Err(at(format!(
                "says nothing to do: give it one of {}",
                STEP_TYPES.join(", ")
            )));
        }
        many => {
            return Err(at(format!(
                "does {} at once: one step does one thing",
                many.join(" and ")
            )));
        }
    };
    let body = &m[kind];
    let action = match kind {
        "command" => match body {
            Json::String(c) if !c.trim().is_empty() => Action::Command(c.clone()),
            other => return Err(at(format!("`command: {other}` must be a shell command"))),
        },
        "sensor" => Action::Sensor(sensor(body).map_err(at)?),
        "ingest" => Action::Ingest {
            select: selection(body, kind).map_err(at)?.0,
        },
        _ => {
            let (select, exclude, full_refresh) = selection(body, kind).map_err(at)?;
            Action::Strata {
                command: kind.to_string(),
                select,
                exclude,
                full_refresh,
            }
        }
    };
    let after = match m.get("after") {
        Some(v) => names(Some(v), "after")?,
        None => previous.into_iter().collect(),
    };
    let retries = match m.get("retries") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n <= 100)
            .ok_or_else(|| {
                at(format!(
                    "`retries: {v}` must be a whole number from 0 to 100"
                ))
            })?,
    };
    let backoff = match m.get("backoff") {
        None => Backoff::default(),
        Some(b) => backoff(b).map_err(at)?,
    };
    let timeout = match m.get("timeout") {
        None | Some(Json::Null) => None,
        Some(v) => Some(duration(v, "timeout").map_err(at)?),
    };
    let on_failure = match m.get("on_failure").and_then(Json::as_str) {
        None if !m.contains_key("on_failure") => OnFailure::Stop,
        Some("stop") => OnFailure::Stop,
        Some("continue") => OnFailure::Continue,
        _ => {
            return Err(at(format!(
                "`on_failure: {}` must be `stop` or `continue`",
                m["on_failure"]
            )));
        }
    };
    let poke_interval = match m.get("poke_interval") {
        None => Duration::from_secs(60),
        Some(_) if kind != "sensor" => {
            return Err(at("`poke_interval` is for sensors".into()));
        }
        Some(v) => duration(v, "poke_interval").map_err(at)?,
    };
    Ok(Step {
        name,
        action,
        after,
        retries,
        backoff,
        timeout,
        on_failure,
        poke_interval,
    })
}

fn first_key_needle(m: &serde_json::Map<String, Json>) -> String {
    m.keys().next().map(|k| format!("{k}:")).unwrap_or_default()
}

/// `{select: …, exclude: …, full_refresh: …}`, a selection alone (`build: "+mart_mrr"`), or
/// nothing (`build: {}`, everything).
fn selection(
    body: &Json,
    kind: &str,
) -> std::result::Result<(Option<String>, Option<String>, bool), String> {
    match body {
        Json::Null => Ok((None, None, false)),
        Json::String(s) => Ok((Some(s.clone()), None, false)),
        Json::Object(m) => {
            let keys: &[&str] = match kind {
                "ingest" => &["select"],
                _ => &["select", "exclude", "full_refresh"],
            };
            for k in m.keys() {
                if !keys.contains(&k.as_str()) {
                    return Err(format!(
                        "`{k}` is not a setting of `{kind}`{}; it takes {}",
                        did_you_mean(k, keys.iter().copied()),
                        keys.join(", ")
                    ));
                }
            }
            let text = |k: &str| -> std::result::Result<Option<String>, String> {
                match m.get(k) {
                    None | Some(Json::Null) => Ok(None),
                    Some(Json::String(s)) => Ok(Some(s.clone())),
                    Some(Json::Array(items)) => Ok(Some(
                        items
                            .iter()
                            .map(|i| {
                                i.as_str()
                                    .map(str::to_string)
                                    .unwrap_or_else(|| i.to_string())
                            })
                            .collect::<Vec<_>>()
                            .join(" "),
                    )),
                    Some(other) => Err(format!(
                        "`{k}: {other}` must be a selection such as \"+mart_mrr\""
                    )),
                }
            };
            let full_refresh = match m.get("full_refresh") {
                None => false,
                Some(Json::Bool(b)) => *b,
                Some(other) => {
                    return Err(format!("`full_refresh: {other}` must be true or false"));
                }
            };
            Ok((text("select")?, text("exclude")?, full_refresh))
        }
        other => Err(format!(
            "`{kind}: {other}` must be a mapping such as {{select: \"+mart_mrr\"}}"
        )),
    }
}

fn sensor(body: &Json) -> std::result::Result<Sensor, String> {
    let Json::Object(m) = body else {
        return Err(format!(
            "`sensor: {body}` must be a mapping: {{files: GLOB}}, {{freshness: SELECTION}} or {{sql: CONDITION}}"
        ));
    };
    let kinds = ["files", "freshness", "sql"];
    if m.len() != 1 {
        return Err(format!(
            "a sensor waits for one thing: one of {}",
            kinds.join(", ")
        ));
    }
    let (k, v) = m.iter().next().ok_or("an empty sensor")?;
    let text = |v: &Json| match v {
        Json::String(s) if !s.trim().is_empty() => Ok(s.clone()),
        other => Err(format!("`{k}: {other}` must be text")),
    };
    match k.as_str() {
        "files" => Ok(Sensor::Files(text(v)?)),
        "sql" => Ok(Sensor::Sql(text(v)?)),
        "freshness" => Ok(Sensor::Freshness(match v {
            Json::Null | Json::Bool(true) => None,
            other => Some(text(other)?),
        })),
        other => Err(format!(
            "`{other}` is not a sensor{}; a sensor waits for one of {}",
            did_you_mean(other, kinds),
            kinds.join(", ")
        )),
    }
}

fn backoff(b: &Json) -> std::result::Result<Backoff, String> {
    let Json::Object(m) = b else {
        return Err(format!(
            "`backoff: {b}` must be a mapping such as {{initial: 10s, max: 5m}}"
        ));
    };
    let keys = ["initial", "max", "jitter"];
    for k in m.keys() {
        if !keys.contains(&k.as_str()) {
            return Err(format!(
                "`{k}` is not a setting of `backoff`{}; it takes {}",
                did_you_mean(k, keys),
                keys.join(", ")
            ));
        }
    }
    let mut out = Backoff::default();
    if let Some(v) = m.get("initial") {
        out.initial = duration(v, "initial")?;
    }
    if let Some(v) = m.get("max") {
        out.max = duration(v, "max")?;
    }
    if out.max < out.initial {
        out.max = out.initial;
    }
    match m.get("jitter") {
        None => {}
        Some(Json::Bool(b)) => out.jitter = *b,
        Some(other) => return Err(format!("`jitter: {other}` must be true or false")),
    }
    Ok(out)
}

fn duration(v: &Json, key: &str) -> std::result::Result<Duration, String> {
    let parsed = match v {
        Json::Number(n) => n.as_f64().and_then(|s| parse_duration(&s.to_string())),
        Json::String(s) => parse_duration(s),
        _ => None,
    };
    parsed
        .ok_or_else(|| format!("`{key}: {v}` is not a duration: write it as 30s, 5m, 1h or 1h30m"))
}

fn alerts(a: &Json) -> Parsed<Alerts> {
    let Json::Object(m) = a else {
        return Err((
            "alerts".into(),
            format!("`alerts: {a}` must be a mapping with `on` and `webhook` or `email`"),
        ));
    };
    unknown_keys(m, &["on", "sla", "webhook", "email"], "alerts")?;
    let on = names(m.get("on"), "on")?;
    for event in &on {
        if !ALERT_EVENTS.contains(&event.as_str()) {
            return Err((
                event.clone(),
                format!(
                    "alerts: `{event}` is not an event{}; the events are {}",
                    did_you_mean(event, ALERT_EVENTS),
                    ALERT_EVENTS.join(", ")
                ),
            ));
        }
    }
    let sla = match m.get("sla") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(
            chrono::NaiveTime::parse_from_str(s, "%H:%M")
                .or_else(|_| chrono::NaiveTime::parse_from_str(s, "%H:%M:%S"))
                .map(Sla::At)
                .ok()
                .or_else(|| parse_duration(s).map(Sla::After))
                .ok_or_else(|| {
                    (
                        "sla".into(),
                        format!(
                            "alerts: `sla: {s}` is neither a time of day such as \"07:30\" nor a duration such as 2h"
                        ),
                    )
                })?,
        ),
        Some(other) => {
            return Err((
                "sla".into(),
                format!(
                    "alerts: `sla: {other}` must be a quoted time of day such as \"07:30\" or a duration such as 2h"
                ),
            ));
        }
    };
    let webhook = match m.get("webhook") {
        None | Some(Json::Null) => None,
        Some(Json::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err((
                "webhook".into(),
                format!("alerts: `webhook: {other}` must be a URL"),
            ));
        }
    };
    let email = names(m.get("email"), "email")?;
    if !on.is_empty() && webhook.is_none() && email.is_empty() {
        return Err((
            "alerts".into(),
            "alerts: say where to send them: `webhook: URL` or `email: [address]`".into(),
        ));
    }
    if on.iter().any(|e| e == "sla_miss") && sla.is_none() {
        return Err((
            "sla_miss".into(),
            "alerts: `sla_miss` needs `sla:`, a time of day (\"07:30\") or a duration after the run is due (2h)".into(),
        ));
    }
    Ok(Alerts {
        on,
        sla,
        webhook,
        email,
    })
}

/// Every `after` names a step, and no steps wait for each other in a circle.
fn check_dependencies(steps: &[Step]) -> Parsed<()> {
    let index: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(i, s)| (s.name.as_str(), i))
        .collect();
    for s in steps {
        for a in &s.after {
            if !index.contains_key(a.as_str()) {
                return Err((
                    format!("name: {}", s.name),
                    format!(
                        "step `{}` waits for `{a}`, which is not a step of this pipeline{}",
                        s.name,
                        did_you_mean(a, steps.iter().map(|s| s.name.as_str()))
                    ),
                ));
            }
            if a == &s.name {
                return Err((
                    format!("name: {}", s.name),
                    format!("step `{}` waits for itself", s.name),
                ));
            }
        }
    }
    // Depth-first search for a cycle, reporting it in order.
    let mut state: BTreeMap<usize, u8> = BTreeMap::new();
    fn visit(
        i: usize,
        steps: &[Step],
        index: &HashMap<&str, usize>,
        state: &mut BTreeMap<usize, u8>,
        path: &mut Vec<usize>,
    ) -> Option<Vec<usize>> {
        match state.get(&i) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|p| *p == i).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(i);
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(i, 1);
        path.push(i);
        for a in &steps[i].after {
            if let Some(&j) = index.get(a.as_str())
                && let Some(cycle) = visit(j, steps, index, state, path)
            {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(i, 2);
        None
    }
    for i in 0..steps.len() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(i, steps, &index, &mut state, &mut path) {
            let names: Vec<&str> = cycle
                .iter()
                .rev()
                .map(|&j| steps[j].name.as_str())
                .collect();
            let first = &steps[cycle[0]].name;
            return Err((
                format!("name: {first}"),
                format!(
                    "the steps wait for each other in a circle: {}",
                    names.join(" → ")
                ),
            ));
        }
    }
    Ok(())
}
