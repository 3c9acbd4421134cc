//! A `tracing-subscriber` layer that records the span tree: every span
//! (with its parent and fields) and every event (with the span it happened
//! in), for the tracing tests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

/// A span as the layer saw it.
#[derive(Debug, Default)]
struct Seen {
    name: &'static str,
    fields: BTreeMap<String, String>,
    /// Events inside it and child spans, in order: `event:<message>` or
    /// `span:<id>`.
    children: Vec<String>,
}

/// Records every span (with its parent and fields) and every event (with
/// the span it happened in).
#[derive(Clone, Default)]
pub(crate) struct Capture {
    spans: Arc<Mutex<BTreeMap<u64, Seen>>>,
    roots: Arc<Mutex<Vec<String>>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let parent = ctx.span(id).and_then(|span| span.parent()).map(|parent| parent.id().into_u64());
        let mut seen = Seen { name: attrs.metadata().name(), ..Seen::default() };
        attrs.record(&mut Fields(&mut seen.fields));
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        match parent.and_then(|p| spans.get_mut(&p)) {
            Some(parent) => parent.children.push(format!("span:{}", id.into_u64())),
            None => self.roots.lock().unwrap().push(format!("span:{}", id.into_u64())),
        }
        spans.insert(id.into_u64(), seen);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(seen) = self.spans.lock().unwrap_or_else(PoisonError::into_inner).get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut seen.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let extra: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let line =
            if extra.is_empty() { format!("event:{message}") } else { format!("event:{message} {}", extra.join(" ")) };
        let current = ctx.event_span(event).map(|span| span.id().into_u64());
        let mut spans = self.spans.lock().unwrap_or_else(PoisonError::into_inner);
        match current.and_then(|id| spans.get_mut(&id)) {
            Some(span) => span.children.push(line),
            None => self.roots.lock().unwrap().push(line),
        }
    }
}

impl Capture {
    /// The captured tree, one line per span or event, indented by depth;
    /// span fields sorted by name.
    pub(crate) fn tree(&self) -> String {
        let spans = self.spans.lock().unwrap();
        let mut out = String::new();
        let roots = self.roots.lock().unwrap().clone();
        for root in roots {
            render(&spans, &root, 0, &mut out);
        }
        out
    }
}

fn render(spans: &BTreeMap<u64, Seen>, node: &str, depth: usize, out: &mut String) {
    let indent = "  ".repeat(depth);
    match node.strip_prefix("span:") {
        Some(id) => {
            let seen = &spans[&id.parse::<u64>().unwrap()];
            let fields: Vec<String> = seen.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(out, "{indent}{}{{{}}}", seen.name, fields.join(" "));
            for child in &seen.children {
                render(spans, child, depth + 1, out);
            }
        }
        None => {
            let _ = writeln!(out, "{indent}{node}");
        }
    }
}

/// Runs `call` with `capture` as the thread's subscriber (the test runtime
/// is current-thread, so every poll happens here).
pub(crate) async fn captured<T>(capture: &Capture, call: impl Future<Output = T>) -> T {
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let _default = tracing::subscriber::set_default(subscriber);
    call.await
}
