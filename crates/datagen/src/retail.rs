//! A retailer's operational database (seeds 000, 002 and 003): customers whose segment changes
//! over time, products, stores, orders with their items (online and in store), web events,
//! point-of-sale transactions and daily inventory — as the tables of its PostgreSQL OLTP
//! schema, written as CSV files (one per table) that `COPY … (FORMAT csv, HEADER)` loads.
//!
//! **Days.** Day 0 is 2025-06-30: `generate(.., day: 0, ..)` writes the database as it is at
//! the end of that day, with history from 2025-01-01. Day K ≥ 1 writes the *changes* of the
//! K-th day after: new customers and customers whose segment changed, new orders with their
//! items, orders whose status moved (shipped, delivered, cancelled, returned), that day's web
//! events, transactions and inventory. Each row is the record's whole new state, so applying a
//! day is an upsert by primary key; applying days 1..K in turn gives the database as it is at
//! the end of day K.
//!
//! Everything is a function of the seed and the scale: a record's story is drawn from a random
//! stream of its own (customer, order, event), so a day can be written without the days before.
//! Scale 1 is seed 002's figures: 1,000 customers, about 5,000 orders, 10,000 order items and
//! 50,000 web events at day 0.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Weekday};

use crate::csv::Row;
use crate::rng::Rng;

/// The last day of the initial history (day 0).
pub fn day_zero() -> NaiveDate {
    NaiveDate::from_ymd_opt(2025, 6, 30).unwrap_or_default()
}

/// The first day of order history: day -180.
pub const HISTORY_DAYS: i64 = 180;

/// The date of day `d` (0 = [`day_zero`]; negative: the history before it).
pub fn date_of(d: i64) -> NaiveDate {
    day_zero() + TimeDelta::days(d)
}

/// How much data, and which.
#[derive(Debug, Clone, Copy)]
pub struct RetailOptions {
    /// 1.0 is 1,000 customers and about 5,000 orders at day 0.
    pub scale: f64,
    pub seed: u64,
}

/// One table of the source database: its columns with their PostgreSQL types, and its key.
#[derive(Debug)]
pub struct TableDef {
    pub name: &'static str,
    pub columns: &'static [(&'static str, &'static str)],
    pub key: &'static [&'static str],
}

impl TableDef {
    /// `create table` for this table in `schema`.
    pub fn create_sql(&self, schema: &str) -> String {
        let cols: Vec<String> = self
            .columns
            .iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect();
        format!(
            "create table {schema}.{} ({}, primary key ({}))",
            self.name,
            cols.join(", "),
            self.key.join(", ")
        )
    }

    /// Upsert the rows of `from` (same columns) into this table of `schema`.
    pub fn upsert_sql(&self, schema: &str, from: &str) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        let sets: Vec<String> = names
            .iter()
            .filter(|n| !self.key.contains(n))
            .map(|n| format!("{n} = excluded.{n}"))
            .collect();
        format!(
            "insert into {schema}.{t} ({cols}) select {cols} from {from} \
             on conflict ({key}) do update set {sets}",
            t = self.name,
            cols = names.join(", "),
            key = self.key.join(", "),
            sets = sets.join(", ")
        )
    }

    /// The CSV header line.
    fn header(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(n, _)| *n).collect();
        format!("{}\n", names.join(","))
    }
}

/// The source database's tables, in the order they are written and loaded.
pub const TABLES: &[TableDef] = &[
    TableDef {
        name: "customers",
        columns: &[
            ("id", "bigint not null"),
            ("email", "text not null"),
            ("first_name", "text"),
            ("last_name", "text"),
            ("segment", "text not null"),
            ("city", "text"),
            ("country", "text"),
            ("created_at", "timestamptz not null"),
            ("updated_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "products",
        columns: &[
            ("id", "bigint not null"),
            ("sku", "text not null"),
            ("name", "text not null"),
            ("category", "text not null"),
            ("brand", "text"),
            ("unit_price", "numeric(10,2) not null"),
            ("unit_cost", "numeric(10,2) not null"),
            ("active", "boolean not null"),
            ("created_at", "timestamptz not null"),
            ("updated_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "stores",
        columns: &[
            ("id", "integer not null"),
            ("name", "text not null"),
            ("city", "text"),
            ("region", "text"),
            ("store_type", "text"),
            ("opened_on", "date"),
            ("updated_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "orders",
        columns: &[
            ("id", "bigint not null"),
            ("customer_id", "bigint not null"),
            ("store_id", "integer"),
            ("channel", "text not null"),
            ("status", "text not null"),
            ("placed_at", "timestamptz not null"),
            ("updated_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "order_items",
        columns: &[
            ("id", "bigint not null"),
            ("order_id", "bigint not null"),
            ("line_number", "integer not null"),
            ("product_id", "bigint not null"),
            ("quantity", "integer not null"),
            ("unit_price", "numeric(10,2) not null"),
            ("discount_amount", "numeric(10,2) not null"),
            ("created_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "web_events",
        columns: &[
            ("id", "bigint not null"),
            ("customer_id", "bigint"),
            ("session_id", "text not null"),
            ("event_type", "text not null"),
            ("product_id", "bigint"),
            ("occurred_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "pos_transactions",
        columns: &[
            ("id", "bigint not null"),
            ("store_id", "integer not null"),
            ("order_id", "bigint not null"),
            ("kind", "text not null"),
            ("amount", "numeric(12,2) not null"),
            ("payment_method", "text not null"),
            ("transacted_at", "timestamptz not null"),
        ],
        key: &["id"],
    },
    TableDef {
        name: "inventory_daily",
        columns: &[
            ("store_id", "integer not null"),
            ("product_id", "bigint not null"),
            ("snapshot_date", "date not null"),
            ("on_hand", "integer not null"),
            ("on_order", "integer not null"),
        ],
        key: &["store_id", "product_id", "snapshot_date"],
    },
];

/// Rows written per table, in [`TABLES`] order.
#[derive(Debug, Default, Clone)]
pub struct RetailSummary {
    pub rows: Vec<(&'static str, u64)>,
    pub bytes: u64,
}

impl RetailSummary {
    pub fn rows_of(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(t, _)| *t == table)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}

/// The folder a day's files go to under `out`: `day_000`, `day_001`, …
pub fn day_dir(out: &Path, day: u32) -> PathBuf {
    out.join(format!("day_{day:03}"))
}

/// Write day `day` (0: the database at day 0; K: the changes of day K) into `dir`, one
/// `<table>.csv` per table with a header line. Files are written aside and put in place when
/// all are whole. `progress` is called with a table's name as it starts.
pub fn generate(
    options: &RetailOptions,
    day: u32,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> crate::Result<RetailSummary> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let world = World::new(options, day as i64);
    let mut summary = RetailSummary::default();
    for table in TABLES {
        progress(table.name);
        let path = dir.join(format!("{}.csv", table.name));
        let partial = crate::partial_path(&path);
        let file = File::create(&partial).map_err(|e| crate::Error::io(&partial, e))?;
        let mut out = Out {
            w: BufWriter::with_capacity(1 << 20, file),
            path: &path,
            rows: 0,
            bytes: 0,
            row: Row::default(),
        };
        out.raw(table.header().as_bytes())?;
        match table.name {
            "customers" => world.customers(&mut out)?,
            "products" => world.products(&mut out)?,
            "stores" => world.stores(&mut out)?,
            "orders" => world.orders(&mut out, OrderPart::Orders)?,
            "order_items" => world.orders(&mut out, OrderPart::Items)?,
            "web_events" => world.events(&mut out)?,
            "pos_transactions" => world.orders(&mut out, OrderPart::Pos)?,
            _ => world.inventory(&mut out)?,
        }
        out.w.flush().map_err(|e| crate::Error::io(&path, e))?;
        summary.rows.push((table.name, out.rows));
        summary.bytes += out.bytes;
    }
    for table in TABLES {
        crate::publish(&dir.join(format!("{}.csv", table.name)))?;
    }
    Ok(summary)
}

struct Out<'a> {
    w: BufWriter<File>,
    path: &'a Path,
    rows: u64,
    bytes: u64,
    row: Row,
}

impl Out<'_> {
    fn raw(&mut self, bytes: &[u8]) -> crate::Result<()> {
        self.bytes += bytes.len() as u64;
        self.w
            .write_all(bytes)
            .map_err(|e| crate::Error::io(self.path, e))
    }

    /// End the row built in `self.row`.
    fn end(&mut self) -> crate::Result<()> {
        let n = self
            .row
            .end(&mut self.w)
            .map_err(|e| crate::Error::io(self.path, e))?;
        self.rows += 1;
        self.bytes += n;
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum OrderPart {
    Orders,
    Items,
    Pos,
}

// Streams: each kind of record draws from streams of its own.
const CUSTOMER: u64 = 1;
const SEGMENT: u64 = 2;
const PRODUCT: u64 = 3;
const STORE: u64 = 4;
const ORDER_COUNT: u64 = 5;
const ORDER: u64 = 6;
const EVENT_COUNT: u64 = 7;
const EVENT: u64 = 8;
const NEW_CUSTOMERS: u64 = 9;
const INVENTORY: u64 = 10;

const SEGMENTS: [&str; 5] = ["new", "occasional", "regular", "loyal", "vip"];
/// How far after its placement an order can still change (its return).
const ORDER_LIFE_DAYS: i64 = 25;
const INVENTORY_HISTORY_DAYS: i64 = 30;

struct World {
    seed: u64,
    /// The day being written.
    day: i64,
    /// Customers that exist at day 0.
    base_customers: u64,
    /// New customers of days 1..=day: ids after `base_customers`, in day order.
    new_customers: Vec<u64>,
    products: u64,
    stores: u64,
    /// First order id of each day from -HISTORY_DAYS to `day` (and the one after).
    order_ids: Vec<u64>,
    event_ids: Vec<u64>,
}

impl World {
    fn new(options: &RetailOptions, day: i64) -> Self {
        let scale = options.scale;
        let seed = options.seed;
        let count = |kind: u64, d: i64, base: f64| -> u64 {
            let mut rng = stream(seed, kind, (d + 10_000) as u64);
            let weekday = match date_of(d).weekday() {
                Weekday::Sat | Weekday::Sun => 1.3,
                Weekday::Mon => 0.85,
                _ => 1.0,
            };
            let growth = 1.0 + 0.002 * (d + HISTORY_DAYS) as f64;
            let noise = 0.85 + 0.3 * rng.f64();
            (base * scale * weekday * growth * noise).round() as u64
        };
        let mut order_ids = vec![1];
        let mut event_ids = vec![1];
        for d in -HISTORY_DAYS..=day {
            let o = count(ORDER_COUNT, d, 21.9);
            let e = count(EVENT_COUNT, d, 221.0);
            order_ids.push(order_ids[order_ids.len() - 1] + o);
            event_ids.push(event_ids[event_ids.len() - 1] + e);
        }
        let new_customers = (1..=day)
            .map(|d| {
                let mut rng = stream(seed, NEW_CUSTOMERS, d as u64);
                (3.0 * scale * (0.5 + rng.f64())).round() as u64
            })
            .collect();
        World {
            seed,
            day,
            base_customers: ((1000.0 * scale).round() as u64).max(1),
            new_customers,
            products: ((200.0 * scale).round() as u64).max(20),
            stores: ((10.0 * scale).round() as u64).max(2),
            order_ids,
            event_ids,
        }
    }

    fn rng(&self, kind: u64, index: u64) -> Rng {
        stream(self.seed, kind, index)
    }

    /// Ids of orders placed on day `d`.
    fn orders_on(&self, d: i64) -> std::ops::Range<u64> {
        let i = (d + HISTORY_DAYS) as usize;
        self.order_ids[i]..self.order_ids[i + 1]
    }

    fn events_on(&self, d: i64) -> std::ops::Range<u64> {
        let i = (d + HISTORY_DAYS) as usize;
        self.event_ids[i]..self.event_ids[i + 1]
    }

    /// Customers that exist at the end of day `d`.
    fn customers_at(&self, d: i64) -> u64 {
        if d <= 0 {
            // The base customers signed up over 2024-01-01 ..= day 0, in id order.
            let span = (day_zero() - first_signup()).num_days() as f64;
            let elapsed = (date_of(d) - first_signup()).num_days() as f64 + 1.0;
            ((self.base_customers as f64 * elapsed / span).floor() as u64)
                .clamp(1, self.base_customers)
        } else {
            self.base_customers + self.new_customers[..d as usize].iter().sum::<u64>()
        }
    }

    /// The day customer `id` signed up, and when.
    fn customer_created(&self, id: u64) -> NaiveDateTime {
        let mut rng = self.rng(CUSTOMER, id);
        let day = if id <= self.base_customers {
            let span = (day_zero() - first_signup()).num_days() as f64;
            let q = (id - 1) as f64 / self.base_customers as f64;
            first_signup() + TimeDelta::days((q * span).floor() as i64)
        } else {
            let mut past = self.base_customers;
            let mut d = 1;
            for n in &self.new_customers {
                past += n;
                if id <= past {
                    break;
                }
                d += 1;
            }
            date_of(d)
        };
        day.and_time(NaiveTime::MIN) + TimeDelta::seconds(rng.between(8 * 3600, 21 * 3600))
    }

    /// A customer's segment changes: (when, new segment index), the first at signup.
    fn segment_history(&self, id: u64, until: i64) -> Vec<(NaiveDateTime, usize)> {
        let created = self.customer_created(id);
        let mut rng = self.rng(SEGMENT, id);
        let mut segment = rng.weighted(&[40.0, 30.0, 18.0, 9.0, 3.0]);
        let mut out = vec![(created, segment)];
        let end = date_of(until).and_time(NaiveTime::MIN) + TimeDelta::days(1);
        let mut at = created;
        loop {
            // Every 30 days and more: a move up or down the ladder.
            let gap = 30.0 - 120.0 * (1.0 - rng.f64()).ln();
            at += TimeDelta::seconds((gap * 86_400.0) as i64);
            if at >= end {
                return out;
            }
            segment = if segment == 0 || (segment < 4 && rng.chance(0.6)) {
                segment + 1
            } else {
                segment - 1
            };
            out.push((at, segment));
        }
    }

    fn customers(&self, out: &mut Out) -> crate::Result<()> {
        let last = self.customers_at(self.day);
        let today = date_of(self.day);
        for id in 1..=last {
            let history = self.segment_history(id, self.day);
            let (updated, segment) = history[history.len() - 1];
            // Day 0: every customer; day K: those created or changed that day.
            if self.day > 0 && updated.date() != today {
                continue;
            }
            let created = history[0].0;
            let mut rng = self.rng(CUSTOMER, id);
            rng.next_u64(); // the signup time's draw
            let first = rng.pick(&FIRST_NAMES);
            let last_name = rng.pick(&LAST_NAMES);
            let (city, country) = rng.pick(&CITIES);
            let mut email = format!(
                "{}.{}{id}@{}",
                first.to_lowercase(),
                last_name.to_lowercase(),
                rng.pick(&["mail.com", "post.net", "inbox.org"])
            );
            if rng.chance(0.03) {
                email = email.to_uppercase();
            }
            out.row
                .int(id as i64)
                .text(&email)
                .text(first)
                .text(last_name)
                .text(SEGMENTS[segment])
                .text(city)
                .text(country)
                .time(created)
                .time(updated);
            out.end()?;
        }
        Ok(())
    }

    fn product(&self, id: u64) -> Product {
        let mut rng = self.rng(PRODUCT, id);
        let category = rng.pick(&CATEGORIES);
        let brand = rng.pick(&BRANDS);
        // Prices from 5 to 500, more of them cheap.
        let price = (5.0 * 100f64.powf(rng.f64().powf(1.6)) * 100.0).round() / 100.0;
        let margin = 0.3 + 0.3 * rng.f64();
        Product {
            category,
            brand,
            name: format!("{brand} {category} {}", rng.pick(&MODELS)),
            price,
            cost: ((price * (1.0 - margin)) * 100.0).round() / 100.0,
            active: !rng.chance(0.05),
        }
    }

    fn products(&self, out: &mut Out) -> crate::Result<()> {
        if self.day > 0 {
            return Ok(());
        }
        let created = NaiveDate::from_ymd_opt(2023, 11, 1)
            .unwrap_or_default()
            .and_time(NaiveTime::MIN);
        for id in 1..=self.products {
            let p = self.product(id);
            out.row
                .int(id as i64)
                .text(&format!("SKU-{id:06}"))
                .text(&p.name)
                .text(p.category)
                .text(p.brand)
                .money(p.price)
                .money(p.cost)
                .bool(p.active)
                .time(created)
                .time(created);
            out.end()?;
        }
        Ok(())
    }

    fn stores(&self, out: &mut Out) -> crate::Result<()> {
        if self.day > 0 {
            return Ok(());
        }
        for id in 1..=self.stores {
            let mut rng = self.rng(STORE, id);
            let (city, region) = rng.pick(&STORE_CITIES);
            let kind = STORE_TYPES[rng.weighted(&[20.0, 60.0, 20.0])];
            let opened = NaiveDate::from_ymd_opt(2015 + rng.between(0, 8) as i32, 3, 1)
                .unwrap_or_default()
                + TimeDelta::days(rng.between(0, 300));
            out.row
                .int(id as i64)
                .text(&format!("{city} {}", capitalized(kind)))
                .text(city)
                .text(region)
                .text(kind)
                .date(opened)
                .time(opened.and_time(NaiveTime::MIN));
            out.end()?;
        }
        Ok(())
    }

    /// The products store `store` carries (up to 50).
    fn assortment(&self, store: u64) -> Vec<u64> {
        let mut rng = self.rng(STORE, 1_000_000 + store);
        let n = self.products.min(50);
        let mut chosen: Vec<u64> = Vec::with_capacity(n as usize);
        while (chosen.len() as u64) < n {
            let p = popular_product(&mut rng, self.products);
            if !chosen.contains(&p) {
                chosen.push(p);
            }
        }
        chosen
    }

    fn order(&self, id: u64, day: i64, assortments: &[Vec<u64>]) -> Order {
        let mut rng = self.rng(ORDER, id);
        let placed = date_of(day).and_time(NaiveTime::MIN)
            + TimeDelta::seconds(rng.between(8 * 3600, 22 * 3600));
        // Busy customers order more: a skew towards low ids among those who exist.
        let existing = self.customers_at(day);
        let customer = 1 + ((rng.f64().powf(1.4)) * existing as f64) as u64 % existing;
        let in_store = rng.chance(0.4);
        let store = in_store.then(|| rng.between(1, self.stores as i64) as u64);
        let lines = [1, 1, 1, 1, 2, 2, 2, 3, 3, 4][rng.between(0, 9) as usize];
        let mut items = Vec::with_capacity(lines);
        for line in 1..=lines {
            let product = match store {
                Some(s) => rng.pick(&assortments[s as usize - 1]),
                None => popular_product(&mut rng, self.products),
            };
            let price = self.product(product).price;
            // A few lines are typed wrongly at the till: no quantity.
            let quantity = if rng.chance(0.003) {
                0
            } else {
                [1, 1, 1, 2, 2, 3][rng.between(0, 5) as usize]
            };
            let discount = if rng.chance(0.12) {
                (price * quantity as f64 * (0.1 + 0.1 * rng.f64()) * 100.0).round() / 100.0
            } else {
                0.0
            };
            items.push(Item {
                line: line as i64,
                product,
                quantity,
                price,
                discount,
            });
        }
        let hours = |rng: &mut Rng, lo: i64, hi: i64| TimeDelta::hours(rng.between(lo, hi));
        let mut steps = Vec::new();
        if in_store {
            steps.push((placed, "completed"));
            if rng.chance(0.02) {
                steps.push((placed + hours(&mut rng, 24, 14 * 24), "returned"));
            }
        } else {
            steps.push((placed, "placed"));
            if rng.chance(0.04) {
                steps.push((placed + hours(&mut rng, 1, 20), "cancelled"));
            } else {
                let shipped = placed + hours(&mut rng, 18, 48);
                let delivered = shipped + hours(&mut rng, 40, 120);
                steps.push((shipped, "shipped"));
                steps.push((delivered, "delivered"));
                if rng.chance(0.03) {
                    steps.push((delivered + hours(&mut rng, 72, 14 * 24), "returned"));
                }
            }
        }
        Order {
            id,
            customer,
            store,
            placed,
            items,
            steps,
            payment: PAYMENTS[rng.weighted(&[55.0, 25.0, 15.0, 5.0])],
        }
    }

    fn orders(&self, out: &mut Out, part: OrderPart) -> crate::Result<()> {
        let assortments: Vec<Vec<u64>> = (1..=self.stores).map(|s| self.assortment(s)).collect();
        let (first_day, end) = if self.day == 0 {
            (-HISTORY_DAYS, date_of(0) + TimeDelta::days(1))
        } else {
            (
                (self.day - ORDER_LIFE_DAYS).max(-HISTORY_DAYS),
                date_of(self.day) + TimeDelta::days(1),
            )
        };
        let end = end.and_time(NaiveTime::MIN);
        let today = date_of(self.day);
        let changed_today = |at: NaiveDateTime| self.day == 0 || at.date() == today;
        for d in first_day..=self.day {
            for id in self.orders_on(d) {
                let order = self.order(id, d, &assortments);
                let new_today = d == self.day || self.day == 0;
                match part {
                    OrderPart::Orders => {
                        let Some(&(updated, status)) =
                            order.steps.iter().rev().find(|(at, _)| *at < end)
                        else {
                            continue;
                        };
                        if !changed_today(updated) {
                            continue;
                        }
                        out.row
                            .int(id as i64)
                            .int(order.customer as i64)
                            .opt_int(order.store.map(|s| s as i64))
                            .text(if order.store.is_some() {
                                "store"
                            } else {
                                "online"
                            })
                            .text(status)
                            .time(order.placed)
                            .time(updated);
                        out.end()?;
                    }
                    OrderPart::Items if new_today => {
                        for item in &order.items {
                            out.row
                                .int((order.id * 10 + item.line as u64) as i64)
                                .int(order.id as i64)
                                .int(item.line)
                                .int(item.product as i64)
                                .int(item.quantity)
                                .money(item.price)
                                .money(item.discount)
                                .time(order.placed);
                            out.end()?;
                        }
                    }
                    OrderPart::Items => {}
                    OrderPart::Pos => {
                        let Some(store) = order.store else { continue };
                        let total = order.net_total();
                        let sale = (order.id as i64, "sale", total, order.placed);
                        let ret =
                            order
                                .steps
                                .iter()
                                .find(|(_, s)| *s == "returned")
                                .map(|(at, _)| {
                                    (order.id as i64 + 1_000_000_000, "return", -total, *at)
                                });
                        for (tid, kind, amount, at) in std::iter::once(sale).chain(ret) {
                            if at >= end || !changed_today(at) {
                                continue;
                            }
                            out.row
                                .int(tid)
                                .int(store as i64)
                                .int(order.id as i64)
                                .text(kind)
                                .money(amount)
                                .text(order.payment)
                                .time(at);
                            out.end()?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn events(&self, out: &mut Out) -> crate::Result<()> {
        let first_day = if self.day == 0 {
            -HISTORY_DAYS
        } else {
            self.day
        };
        for d in first_day..=self.day {
            let existing = self.customers_at(d);
            let start = date_of(d).and_time(NaiveTime::MIN);
            for id in self.events_on(d) {
                let mut rng = self.rng(EVENT, id);
                let customer = (!rng.chance(0.3)).then(|| rng.between(1, existing as i64));
                let kind = EVENT_TYPES[rng.weighted(&[50.0, 30.0, 14.0, 6.0])];
                let product =
                    (kind != "page_view").then(|| popular_product(&mut rng, self.products) as i64);
                let session = rng.next_u64() % (10 * existing * 50).max(1);
                out.row
                    .int(id as i64)
                    .opt_int(customer)
                    .text(&format!("s{session:x}"))
                    .text(kind)
                    .opt_int(product)
                    .time(start + TimeDelta::seconds(rng.between(0, 86_399)));
                out.end()?;
            }
        }
        Ok(())
    }

    fn inventory(&self, out: &mut Out) -> crate::Result<()> {
        let first_day = if self.day == 0 {
            1 - INVENTORY_HISTORY_DAYS
        } else {
            self.day
        };
        for store in 1..=self.stores {
            for product in self.assortment(store) {
                let mut rng = self.rng(INVENTORY, store * 1_000_000 + product);
                let capacity = rng.between(20, 200);
                let per_day = (capacity as f64 * (0.05 + 0.12 * rng.f64())).max(1.0);
                let restock_every = rng.between(5, 14);
                let phase = rng.between(0, restock_every - 1);
                for d in first_day..=self.day {
                    let since = (d + HISTORY_DAYS + phase).rem_euclid(restock_every);
                    let mut day_rng =
                        self.rng(INVENTORY, (d + 10_000) as u64 * 7919 + store * 31 + product);
                    let sold = per_day * since as f64 * (0.8 + 0.4 * day_rng.f64());
                    let on_hand = (capacity as f64 - sold).round().max(0.0) as i64;
                    let on_order = if on_hand * 3 < capacity {
                        capacity - on_hand
                    } else {
                        0
                    };
                    out.row
                        .int(store as i64)
                        .int(product as i64)
                        .date(date_of(d))
                        .int(on_hand)
                        .int(on_order);
                    out.end()?;
                }
            }
        }
        Ok(())
    }
}

struct Product {
    category: &'static str,
    brand: &'static str,
    name: String,
    price: f64,
    cost: f64,
    active: bool,
}

struct Item {
    line: i64,
    product: u64,
    quantity: i64,
    price: f64,
    discount: f64,
}

struct Order {
    id: u64,
    customer: u64,
    store: Option<u64>,
    placed: NaiveDateTime,
    items: Vec<Item>,
    steps: Vec<(NaiveDateTime, &'static str)>,
    payment: &'static str,
}

impl Order {
    fn net_total(&self) -> f64 {
        let cents: i64 = self
            .items
            .iter()
            .map(|i| ((i.price * i.quantity as f64 - i.discount) * 100.0).round() as i64)
            .sum();
        cents as f64 / 100.0
    }
}

fn stream(seed: u64, kind: u64, index: u64) -> Rng {
    Rng::for_stream(
        seed.wrapping_add(kind.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        index,
    )
}

fn first_signup() -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, 1).unwrap_or_default()
}

/// A product id, the low ids more popular (a long tail).
fn popular_product(rng: &mut Rng, products: u64) -> u64 {
    1 + ((rng.f64().powf(2.2) * products as f64) as u64).min(products - 1)
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

const FIRST_NAMES: [&str; 20] = [
    "Mia", "Noah", "Emma", "Liam", "Olivia", "Lucas", "Sofia", "Elias", "Lena", "Jonas", "Clara",
    "Felix", "Ines", "Hugo", "Nora", "Oscar", "Maya", "Leo", "Ida", "Theo",
];
const LAST_NAMES: [&str; 20] = [
    "Berg", "Costa", "Dubois", "Evans", "Fischer", "Garcia", "Hansen", "Ivanova", "Jensen",
    "Keller", "Larsen", "Moreau", "Nowak", "Olsen", "Petit", "Quinn", "Rossi", "Silva", "Novak",
    "Weber",
];
const CITIES: [(&str, &str); 10] = [
    ("Berlin", "DE"),
    ("Hamburg", "DE"),
    ("Munich", "DE"),
    ("Paris", "FR"),
    ("Lyon", "FR"),
    ("Madrid", "ES"),
    ("Lisbon", "PT"),
    ("Vienna", "AT"),
    ("Zurich", "CH"),
    ("Amsterdam", "NL"),
];
const STORE_CITIES: [(&str, &str); 8] = [
    ("Berlin", "east"),
    ("Leipzig", "east"),
    ("Hamburg", "north"),
    ("Bremen", "north"),
    ("Cologne", "west"),
    ("Dusseldorf", "west"),
    ("Munich", "south"),
    ("Stuttgart", "south"),
];
const STORE_TYPES: [&str; 3] = ["flagship", "mall", "outlet"];
const CATEGORIES: [&str; 8] = [
    "Shoes", "Jackets", "Shirts", "Trousers", "Bags", "Watches", "Hats", "Socks",
];
const BRANDS: [&str; 8] = [
    "Northwind",
    "Fjell",
    "Alba",
    "Corvo",
    "Lumen",
    "Tessera",
    "Vela",
    "Orca",
];
const MODELS: [&str; 8] = [
    "Classic", "Trail", "City", "Sport", "Lite", "Pro", "Heritage", "Edge",
];
const PAYMENTS: [&str; 4] = ["card", "cash", "mobile", "gift_card"];
const EVENT_TYPES: [&str; 4] = ["page_view", "product_view", "add_to_cart", "checkout"];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn rows(dir: &Path, table: &str) -> Vec<Vec<String>> {
        std::fs::read_to_string(dir.join(format!("{table}.csv")))
            .expect("read")
            .lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn day_zero_has_seed_002s_figures_and_days_apply_on_top() {
        let opts = RetailOptions {
            scale: 1.0,
            seed: 3,
        };
        let tmp = tempfile::tempdir().expect("tmp");
        let d0 = generate(&opts, 0, &tmp.path().join("d0"), &mut |_| {}).expect("day 0");
        assert_eq!(d0.rows_of("customers"), 1000);
        let orders = d0.rows_of("orders");
        assert!((4_750..5_250).contains(&orders), "{orders} orders");
        let items = d0.rows_of("order_items");
        assert!((9_500..10_500).contains(&items), "{items} items");
        let events = d0.rows_of("web_events");
        assert!((47_500..52_500).contains(&events), "{events} events");

        // Day 1: new orders, orders moving on, segment changes; the same bytes again.
        let d1 = generate(&opts, 1, &tmp.path().join("d1"), &mut |_| {}).expect("day 1");
        generate(&opts, 1, &tmp.path().join("d1b"), &mut |_| {}).expect("day 1");
        for t in TABLES {
            let name = format!("{}.csv", t.name);
            assert_eq!(
                std::fs::read(tmp.path().join("d1").join(&name)).expect("a"),
                std::fs::read(tmp.path().join("d1b").join(&name)).expect("b")
            );
        }
        assert_eq!(d1.rows_of("products"), 0);
        assert!(d1.rows_of("customers") > 0);
        let before: HashMap<String, Vec<String>> = rows(&tmp.path().join("d0"), "orders")
            .into_iter()
            .map(|r| (r[0].clone(), r))
            .collect();
        let day1 = rows(&tmp.path().join("d1"), "orders");
        let moved = day1
            .iter()
            .filter(|r| before.get(&r[0]).is_some_and(|b| b[4] != r[4]))
            .count();
        let new = day1.iter().filter(|r| !before.contains_key(&r[0])).count();
        assert!(moved > 0 && new > 0, "{moved} moved, {new} new");
        // Every order of day 1 that is not new was placed before and changed on day 1.
        assert!(day1.iter().all(|r| r[6].starts_with("2025-07-01")));
    }
}
