//! A SaaS product's raw data, as its production systems would export it (seed 001): accounts
//! (`user_profiles`), `subscriptions`, `transactions` and `user_events`, one JSON object per
//! line.
//!
//! Each account's whole story — signup, a 14-day trial, conversion, monthly or annual billing,
//! upgrades, downgrades, cancellations, failed payments, refunds, reactivations, and what it
//! clicked — is drawn from a random stream of its own, so the data set is the same for the
//! same seed and scale, and accounts are written one at a time: memory stays flat at any scale.
//!
//! The rules below are the data set's contract; the example project's models and the tests'
//! independent calculations both rely on them:
//! - a subscription row is one period on one plan and billing cycle, `[started_at, ended_at)`;
//!   `ended_at` is null while it runs. An account has at most one row running at any instant;
//!   a plan change ends one row (`status: changed`) and starts the next at the same instant.
//! - trial rows have `is_trial: true` and `amount: 0`; paid rows' `amount` is what one billing
//!   cycle costs (list price, less 20% with a coupon): monthly recurring revenue is `amount`
//!   for `monthly` and `amount / 12` for `annual`.
//! - raw data has the defects real exports have: duplicated transaction lines, emails in mixed
//!   case with stray spaces, missing countries, events of accounts that do not exist and events
//!   without a type.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};

use crate::json::Line;
use crate::rng::Rng;

/// The first day of the data set.
pub fn start_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default()
}

/// The day after the last day of the data set (two years).
pub fn end_date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default()
}

/// One plan of the price list. Prices are in US dollars.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub id: &'static str,
    pub name: &'static str,
    pub tier: usize,
    pub monthly_price: f64,
    pub annual_price: f64,
}

/// The price list, cheapest first (the example project's `plans` seed holds the same).
pub const PLANS: [Plan; 4] = [
    Plan {
        id: "starter",
        name: "Starter",
        tier: 0,
        monthly_price: 29.0,
        annual_price: 290.0,
    },
    Plan {
        id: "pro",
        name: "Pro",
        tier: 1,
        monthly_price: 99.0,
        annual_price: 990.0,
    },
    Plan {
        id: "business",
        name: "Business",
        tier: 2,
        monthly_price: 299.0,
        annual_price: 2990.0,
    },
    Plan {
        id: "enterprise",
        name: "Enterprise",
        tier: 3,
        monthly_price: 999.0,
        annual_price: 9990.0,
    },
];

/// How much data, and which.
#[derive(Debug, Clone, Copy)]
pub struct SaasOptions {
    /// 1.0 is about 1,000 accounts over two years; the row counts grow linearly.
    pub scale: f64,
    pub seed: u64,
}

impl SaasOptions {
    pub fn accounts(&self) -> u64 {
        ((1000.0 * self.scale).round() as u64).max(1)
    }
}

/// What was written.
#[derive(Debug, Default, Clone, Copy)]
pub struct SaasSummary {
    pub accounts: u64,
    pub subscriptions: u64,
    pub transactions: u64,
    pub events: u64,
    pub bytes: u64,
}

impl SaasSummary {
    pub fn rows(&self) -> u64 {
        self.accounts + self.subscriptions + self.transactions + self.events
    }
}

/// The files of a data set in `dir`: `user_profiles.json`, `subscriptions.json`,
/// `transactions.json` and `user_events/YYYY-MM.json` (one file a month).
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![
        dir.join("user_profiles.json"),
        dir.join("subscriptions.json"),
        dir.join("transactions.json"),
    ];
    out.extend(months().map(|m| events_file(dir, m)));
    out
}

fn months() -> impl Iterator<Item = NaiveDate> {
    let (start, end) = (start_date(), end_date());
    (0..).map_while(move |i| {
        start
            .checked_add_months(Months::new(i))
            .filter(|m| *m < end)
    })
}

fn events_file(dir: &Path, month: NaiveDate) -> PathBuf {
    dir.join("user_events")
        .join(format!("{}.json", month.format("%Y-%m")))
}

/// Write the data set into `dir` (created if missing). Files are written aside and put in
/// place when all are whole; a file whose bytes did not change is left as it was (with its
/// modification time, so an ingestion does not load it again). `progress` is called with the
/// accounts written so far and the total.
pub fn generate(
    options: &SaasOptions,
    dir: &Path,
    progress: &mut dyn FnMut(u64, u64),
) -> crate::Result<SaasSummary> {
    let mut out = Outputs::create(dir)?;
    let total = options.accounts();
    let mut ids = Ids::default();
    let mut summary = SaasSummary::default();
    for i in 0..total {
        let mut account = Account::new(options.seed, i, total);
        account.live();
        account.write(&mut out, &mut ids, &mut summary)?;
        if (i + 1) % 500 == 0 || i + 1 == total {
            progress(i + 1, total);
        }
    }
    summary.bytes = out.finish()?;
    Ok(summary)
}

struct Outputs {
    profiles: Writer,
    subscriptions: Writer,
    transactions: Writer,
    events: Vec<Writer>,
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
    bytes: u64,
}

impl Writer {
    /// Writes go to `<path>.partial`, which replaces `path` only when the data set is whole.
    fn create(path: PathBuf) -> crate::Result<Self> {
        let partial = crate::partial_path(&path);
        let file = File::create(&partial).map_err(|e| crate::Error::io(&partial, e))?;
        Ok(Writer {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            bytes: 0,
        })
    }

    fn line(&mut self, line: &mut Line) -> crate::Result<()> {
        match line.end(&mut self.out) {
            Ok(n) => {
                self.bytes += n;
                Ok(())
            }
            Err(e) => Err(crate::Error::io(&self.path, e)),
        }
    }

    fn finish(mut self) -> crate::Result<u64> {
        self.out
            .flush()
            .map_err(|e| crate::Error::io(&self.path, e))?;
        drop(self.out);
        crate::publish(&self.path)?;
        Ok(self.bytes)
    }
}

impl Outputs {
    fn create(dir: &Path) -> crate::Result<Self> {
        let events_dir = dir.join("user_events");
        std::fs::create_dir_all(&events_dir).map_err(|e| crate::Error::io(&events_dir, e))?;
        Ok(Outputs {
            profiles: Writer::create(dir.join("user_profiles.json"))?,
            subscriptions: Writer::create(dir.join("subscriptions.json"))?,
            transactions: Writer::create(dir.join("transactions.json"))?,
            events: months()
                .map(|m| Writer::create(events_file(dir, m)))
                .collect::<crate::Result<_>>()?,
        })
    }

    fn finish(self) -> crate::Result<u64> {
        let mut bytes = 0;
        for w in self.events {
            bytes += w.finish()?;
        }
        bytes += self.profiles.finish()?;
        bytes += self.transactions.finish()?;
        bytes += self.subscriptions.finish()?;
        Ok(bytes)
    }
}

#[derive(Default)]
struct Ids {
    subscription: u64,
    transaction: u64,
    event: u64,
    session: u64,
    line: Line,
}

#[derive(Clone, Copy, PartialEq)]
enum Cycle {
    Monthly,
    Annual,
}

impl Cycle {
    fn name(self) -> &'static str {
        match self {
            Cycle::Monthly => "monthly",
            Cycle::Annual => "annual",
        }
    }

    fn months(self) -> u32 {
        match self {
            Cycle::Monthly => 1,
            Cycle::Annual => 12,
        }
    }
}

/// One subscription row.
struct Period {
    plan: usize,
    cycle: Cycle,
    trial: bool,
    coupon: bool,
    start: NaiveDateTime,
    end: Option<NaiveDateTime>,
    status: &'static str,
    cancel_reason: Option<&'static str>,
}

impl Period {
    fn amount(&self) -> f64 {
        if self.trial {
            return 0.0;
        }
        let plan = &PLANS[self.plan];
        let list = match self.cycle {
            Cycle::Monthly => plan.monthly_price,
            Cycle::Annual => plan.annual_price,
        };
        if self.coupon { list * 0.8 } else { list }
    }
}

struct Payment {
    period: usize,
    at: NaiveDateTime,
    succeeded: bool,
    /// Refunded this many days later.
    refund_after: Option<i64>,
}

/// One account's story, drawn before it is written.
struct Account {
    index: u64,
    rng: Rng,
    signup: NaiveDateTime,
    end: NaiveDateTime,
    periods: Vec<Period>,
    payments: Vec<Payment>,
}

const TRIAL_DAYS: i64 = 14;
const PLAN_WEIGHTS: [f64; 4] = [45.0, 35.0, 15.0, 5.0];
const CONVERSION: [f64; 4] = [0.55, 0.62, 0.66, 0.7];

impl Account {
    fn new(seed: u64, index: u64, total: u64) -> Self {
        let mut rng = Rng::for_stream(seed, index);
        let start = start_date().and_time(chrono::NaiveTime::MIN);
        let end = end_date().and_time(chrono::NaiveTime::MIN);
        // Signups grow over time (density 1 + 2t on the window less the last trial), in
        // account order: the quantile of account i, plus a random time of that day.
        let span = (end - start).num_seconds() as f64 - (TRIAL_DAYS * 86_400) as f64;
        let q = (index as f64 + 0.5) / total as f64;
        let t = ((1.0 + 8.0 * q).sqrt() - 1.0) / 2.0;
        let day = (t * span / 86_400.0).floor() as i64;
        let signup = start
            + TimeDelta::days(day)
            + TimeDelta::seconds(rng.between(6 * 3600, 23 * 3600 + 3599));
        Account {
            index,
            rng,
            signup,
            end,
            periods: Vec::new(),
            payments: Vec::new(),
        }
    }

    fn live(&mut self) {
        let plan = self.rng.weighted(&PLAN_WEIGHTS);
        let trial_end = self.signup + TimeDelta::days(TRIAL_DAYS);
        let converts = self.rng.chance(CONVERSION[plan]);
        let (status, end) = if trial_end >= self.end {
            ("trialing", None)
        } else if converts {
            ("converted", Some(trial_end))
        } else {
            ("expired", Some(trial_end))
        };
        self.periods.push(Period {
            plan,
            cycle: Cycle::Monthly,
            trial: true,
            coupon: false,
            start: self.signup,
            end,
            status,
            cancel_reason: None,
        });
        if status != "converted" {
            return;
        }
        let cycle = if self.rng.chance(0.25) {
            Cycle::Annual
        } else {
            Cycle::Monthly
        };
        let coupon = self.rng.chance(0.1);
        let mut next = Some((trial_end, plan, cycle, coupon));
        while let Some((start, plan, cycle, coupon)) = next.take() {
            if let Some(canceled) = self.paid(start, plan, cycle, coupon) {
                // Some come back, on a monthly plan, after a month to eight.
                if self.rng.chance(0.22) {
                    let back = canceled + TimeDelta::days(self.rng.between(30, 240));
                    if back < self.end {
                        let plan = self.rng.weighted(&PLAN_WEIGHTS);
                        next = Some((back, plan, Cycle::Monthly, false));
                    }
                }
            }
        }
    }

    /// Paid periods from `start` until the account cancels (returns when) or the data ends.
    fn paid(
        &mut self,
        start: NaiveDateTime,
        mut plan: usize,
        mut cycle: Cycle,
        coupon: bool,
    ) -> Option<NaiveDateTime> {
        let mut current = self.open(start, plan, cycle, coupon);
        let mut due = start;
        loop {
            // Bill the cycle that starts at `due`.
            if self.rng.chance(0.04) {
                self.payments.push(Payment {
                    period: current,
                    at: due,
                    succeeded: false,
                    refund_after: None,
                });
                let retry = due + TimeDelta::days(3);
                if retry < self.end {
                    if self.rng.chance(0.7) {
                        self.pay(current, retry);
                    } else {
                        self.close(current, retry, "canceled", Some("payment_failed"));
                        return Some(retry);
                    }
                }
            } else {
                self.pay(current, due);
            }
            let next = match due.checked_add_months(Months::new(cycle.months())) {
                Some(n) if n < self.end => n,
                _ => return None,
            };
            // At renewal: stay, cancel, or change plan or cycle.
            let (cancel, up, down, switch) = match cycle {
                Cycle::Monthly => (0.028 - 0.004 * plan as f64, 0.025, 0.012, 0.01),
                Cycle::Annual => (0.12, 0.10, 0.05, 0.03),
            };
            let r = self.rng.f64();
            if r < cancel {
                self.close(current, next, "canceled", Some("voluntary"));
                return Some(next);
            }
            let r = r - cancel;
            let change = if r < up && plan + 1 < PLANS.len() {
                Some((plan + 1, cycle))
            } else if r >= up && r < up + down && plan > 0 {
                Some((plan - 1, cycle))
            } else if r >= up + down && r < up + down + switch {
                let other = match cycle {
                    Cycle::Monthly => Cycle::Annual,
                    Cycle::Annual => Cycle::Monthly,
                };
                Some((plan, other))
            } else {
                None
            };
            if let Some((p, c)) = change {
                self.close(current, next, "changed", None);
                plan = p;
                cycle = c;
                current = self.open(next, plan, cycle, coupon);
            }
            due = next;
        }
    }

    fn open(&mut self, start: NaiveDateTime, plan: usize, cycle: Cycle, coupon: bool) -> usize {
        self.periods.push(Period {
            plan,
            cycle,
            trial: false,
            coupon,
            start,
            end: None,
            status: "active",
            cancel_reason: None,
        });
        self.periods.len() - 1
    }

    fn close(
        &mut self,
        period: usize,
        at: NaiveDateTime,
        status: &'static str,
        reason: Option<&'static str>,
    ) {
        let p = &mut self.periods[period];
        p.end = Some(at);
        p.status = status;
        p.cancel_reason = reason;
    }

    fn pay(&mut self, period: usize, at: NaiveDateTime) {
        let refund_after = self.rng.chance(0.015).then(|| self.rng.between(2, 10));
        self.payments.push(Payment {
            period,
            at,
            succeeded: true,
            refund_after,
        });
    }

    fn user_id(&self) -> String {
        format!("usr_{:07}", self.index + 1)
    }

    fn write(
        &mut self,
        out: &mut Outputs,
        ids: &mut Ids,
        summary: &mut SaasSummary,
    ) -> crate::Result<()> {
        let user_id = self.user_id();
        self.write_profile(&user_id, out, &mut ids.line)?;
        summary.accounts += 1;

        let first_sub = ids.subscription;
        for p in &self.periods {
            ids.subscription += 1;
            let amount = p.amount();
            let plan = &PLANS[p.plan];
            ids.line
                .str("subscription_id", &format!("sub_{:08}", ids.subscription))
                .str("user_id", &user_id)
                .str("plan_id", plan.id)
                .str("billing_cycle", p.cycle.name())
                .money("amount", amount)
                .str("currency", "USD")
                .str("status", p.status)
                .bool("is_trial", p.trial)
                .opt_str("coupon", p.coupon.then_some("SAVE20"))
                .time("started_at", p.start)
                .opt_time("ended_at", p.end)
                .opt_str("cancel_reason", p.cancel_reason)
                .time("updated_at", p.end.unwrap_or(p.start));
            out.subscriptions.line(&mut ids.line)?;
            summary.subscriptions += 1;
        }

        for pay in &self.payments {
            let period = &self.periods[pay.period];
            let sub_id = format!("sub_{:08}", first_sub + pay.period as u64 + 1);
            ids.transaction += 1;
            let txn_id = format!("txn_{:09}", ids.transaction);
            let copies = if self.rng.chance(0.005) { 2 } else { 1 };
            for _ in 0..copies {
                ids.line
                    .str("transaction_id", &txn_id)
                    .str("subscription_id", &sub_id)
                    .str("user_id", &user_id)
                    .str("type", "payment")
                    .str("status", if pay.succeeded { "succeeded" } else { "failed" })
                    .money("amount", period.amount())
                    .str("currency", "USD")
                    .opt_str(
                        "failure_reason",
                        (!pay.succeeded).then(|| self.rng.pick(&FAILURES)),
                    )
                    .null("refunded_transaction_id")
                    .time("created_at", pay.at);
                out.transactions.line(&mut ids.line)?;
                summary.transactions += 1;
            }
            if let Some(days) = pay.refund_after {
                let at = pay.at + TimeDelta::days(days);
                if at < self.end {
                    ids.transaction += 1;
                    ids.line
                        .str("transaction_id", &format!("txn_{:09}", ids.transaction))
                        .str("subscription_id", &sub_id)
                        .str("user_id", &user_id)
                        .str("type", "refund")
                        .str("status", "succeeded")
                        .money("amount", period.amount())
                        .str("currency", "USD")
                        .null("failure_reason")
                        .str("refunded_transaction_id", &txn_id)
                        .time("created_at", at);
                    out.transactions.line(&mut ids.line)?;
                    summary.transactions += 1;
                }
            }
        }

        self.write_events(&user_id, out, ids, summary)
    }

    fn write_profile(
        &mut self,
        user_id: &str,
        out: &mut Outputs,
        line: &mut Line,
    ) -> crate::Result<()> {
        let rng = &mut self.rng;
        let first = rng.pick(&FIRST_NAMES);
        let last = rng.pick(&LAST_NAMES);
        let company = format!("{last} {}", rng.pick(&COMPANY_SUFFIXES));
        let domain = format!(
            "{}.{}",
            last.to_lowercase(),
            rng.pick(&["com", "io", "co", "net", "de"])
        );
        let mut email = format!(
            "{}.{}{}@{domain}",
            first.to_lowercase(),
            last.to_lowercase(),
            self.index + 1
        );
        if rng.chance(0.05) {
            // Typed by hand: mixed case and stray spaces.
            email = format!(" {} ", email.to_uppercase());
        }
        let country = (!rng.chance(0.02)).then(|| COUNTRIES[rng.weighted(&COUNTRY_WEIGHTS)]);
        line.str("user_id", user_id)
            .str("email", &email)
            .str("full_name", &format!("{first} {last}"))
            .str("company", &company)
            .opt_str("country", country)
            .str("industry", rng.pick(&INDUSTRIES))
            .str(
                "company_size",
                COMPANY_SIZES[rng.weighted(&COMPANY_SIZE_WEIGHTS)],
            )
            .str(
                "acquisition_channel",
                CHANNELS[rng.weighted(&CHANNEL_WEIGHTS)],
            )
            .time("signup_at", self.signup)
            .time("updated_at", self.signup);
        out.profiles.line(line)
    }

    /// Sessions on the days the account had a trial or paid plan: more for bigger plans.
    fn write_events(
        &mut self,
        user_id: &str,
        out: &mut Outputs,
        ids: &mut Ids,
        summary: &mut SaasSummary,
    ) -> crate::Result<()> {
        let start = start_date();
        for p in 0..self.periods.len() {
            let (first, last, chance) = {
                let period = &self.periods[p];
                let end = period.end.unwrap_or(self.end);
                let chance = if period.trial {
                    0.3
                } else {
                    0.08 + 0.05 * period.plan as f64
                };
                (period.start.date(), end.date(), chance)
            };
            let mut day = first;
            while day < last {
                if self.rng.chance(chance) {
                    ids.session += 1;
                    let session = format!("ses_{:09}", ids.session);
                    let device = DEVICES[self.rng.weighted(&DEVICE_WEIGHTS)];
                    let mut at = day.and_time(chrono::NaiveTime::MIN)
                        + TimeDelta::seconds(self.rng.between(7 * 3600, 22 * 3600));
                    let month = (day.year() - start.year()) as usize * 12 + day.month0() as usize;
                    for _ in 0..self.rng.between(1, 6) {
                        ids.event += 1;
                        let kind = EVENT_TYPES[self.rng.weighted(&EVENT_WEIGHTS)];
                        let orphan = self.rng.chance(0.003);
                        let untyped = self.rng.chance(0.002);
                        let line = &mut ids.line;
                        line.str("event_id", &format!("evt_{:010}", ids.event))
                            .str(
                                "user_id",
                                &if orphan {
                                    format!("usr_{:07}", 9_000_000 + self.index)
                                } else {
                                    user_id.to_string()
                                },
                            )
                            .opt_str("event_type", (!untyped).then_some(kind))
                            .str("page", self.rng.pick(&PAGES))
                            .opt_str(
                                "feature",
                                (kind == "feature_use").then(|| self.rng.pick(&FEATURES)),
                            )
                            .str("session_id", &session)
                            .str("device", device)
                            .time("occurred_at", at);
                        out.events[month].line(line)?;
                        summary.events += 1;
                        at += TimeDelta::seconds(self.rng.between(5, 300));
                    }
                }
                day = day.succ_opt().unwrap_or(last);
            }
        }
        Ok(())
    }
}

const FAILURES: [&str; 3] = ["card_declined", "insufficient_funds", "expired_card"];
const FIRST_NAMES: [&str; 24] = [
    "Ada", "Grace", "Alan", "Linus", "Margaret", "Ken", "Barbara", "Dennis", "Frances", "Edsger",
    "Radia", "Tim", "Hedy", "John", "Karen", "Leslie", "Niklaus", "Sophie", "Guido", "Anita",
    "Bjarne", "Jean", "Donald", "Shafi",
];
const LAST_NAMES: [&str; 24] = [
    "Lovelace",
    "Hopper",
    "Turing",
    "Torvalds",
    "Hamilton",
    "Thompson",
    "Liskov",
    "Ritchie",
    "Allen",
    "Dijkstra",
    "Perlman",
    "Berners",
    "Lamarr",
    "Backus",
    "Jones",
    "Lamport",
    "Wirth",
    "Wilson",
    "Rossum",
    "Borg",
    "Stroustrup",
    "Sammet",
    "Knuth",
    "Goldwasser",
];
const COMPANY_SUFFIXES: [&str; 6] = ["Labs", "Inc", "GmbH", "Ltd", "Analytics", "Systems"];
const COUNTRIES: [&str; 8] = ["US", "GB", "DE", "FR", "CA", "IN", "BR", "AU"];
const COUNTRY_WEIGHTS: [f64; 8] = [40.0, 12.0, 10.0, 8.0, 8.0, 10.0, 6.0, 6.0];
const INDUSTRIES: [&str; 6] = [
    "software",
    "retail",
    "finance",
    "healthcare",
    "education",
    "media",
];
const COMPANY_SIZES: [&str; 4] = ["1-10", "11-50", "51-200", "201+"];
const COMPANY_SIZE_WEIGHTS: [f64; 4] = [40.0, 30.0, 20.0, 10.0];
const CHANNELS: [&str; 5] = ["organic", "paid_search", "referral", "social", "partner"];
const CHANNEL_WEIGHTS: [f64; 5] = [35.0, 25.0, 20.0, 12.0, 8.0];
const DEVICES: [&str; 3] = ["desktop", "mobile", "tablet"];
const DEVICE_WEIGHTS: [f64; 3] = [70.0, 24.0, 6.0];
const EVENT_TYPES: [&str; 3] = ["page_view", "click", "feature_use"];
const EVENT_WEIGHTS: [f64; 3] = [55.0, 30.0, 15.0];
const PAGES: [&str; 6] = [
    "/dashboard",
    "/reports",
    "/settings",
    "/billing",
    "/integrations",
    "/team",
];
const FEATURES: [&str; 5] = ["reports", "exports", "alerts", "api", "sso"];

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn same_seed_same_bytes_and_the_rules_hold() {
        let a = tempfile::tempdir().expect("tmp");
        let b = tempfile::tempdir().expect("tmp");
        let opts = SaasOptions {
            scale: 0.2,
            seed: 42,
        };
        let sa = generate(&opts, a.path(), &mut |_, _| {}).expect("generate");
        generate(&opts, b.path(), &mut |_, _| {}).expect("generate");
        for f in files(a.path()) {
            let rel = f.strip_prefix(a.path()).expect("prefix");
            assert_eq!(
                std::fs::read(&f).expect("a"),
                std::fs::read(b.path().join(rel)).expect("b"),
                "{}",
                rel.display()
            );
        }
        assert_eq!(sa.accounts, 200);
        let subs = read(&a.path().join("subscriptions.json"));
        assert_eq!(subs.len() as u64, sa.subscriptions);
        // At most one row runs at any instant, per account: rows of an account are in time
        // order and each starts at or after the previous one's end.
        let mut last: Option<(String, Option<String>)> = None;
        let mut kinds = std::collections::BTreeSet::new();
        for s in &subs {
            let user = s["user_id"].as_str().expect("user").to_string();
            let start = s["started_at"].as_str().expect("start").to_string();
            if let Some((u, end)) = &last
                && *u == user
            {
                let end = end
                    .as_ref()
                    .expect("an earlier row of the account has ended");
                assert!(start >= *end, "{s}");
            }
            last = Some((user, s["ended_at"].as_str().map(str::to_string)));
            kinds.insert(s["status"].as_str().expect("status").to_string());
        }
        for k in ["converted", "expired", "active", "canceled", "changed"] {
            assert!(kinds.contains(k), "no {k} rows: {kinds:?}");
        }
        // Writing the same data set again leaves the files as they were.
        let before = std::fs::metadata(a.path().join("transactions.json"))
            .and_then(|m| m.modified())
            .expect("mtime");
        std::thread::sleep(std::time::Duration::from_millis(20));
        generate(&opts, a.path(), &mut |_, _| {}).expect("generate");
        let after = std::fs::metadata(a.path().join("transactions.json"))
            .and_then(|m| m.modified())
            .expect("mtime");
        assert_eq!(before, after);
        assert!(!a.path().join("transactions.json.partial").exists());
        let other = SaasOptions { seed: 43, ..opts };
        let c = tempfile::tempdir().expect("tmp");
        generate(&other, c.path(), &mut |_, _| {}).expect("generate");
        assert_ne!(
            std::fs::read(a.path().join("subscriptions.json")).expect("a"),
            std::fs::read(c.path().join("subscriptions.json")).expect("c")
        );
    }
}
