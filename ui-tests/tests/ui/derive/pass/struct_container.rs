use recourse::{Classifier, Classify, OutcomeKind};
use std::time::Duration;

#[derive(Debug, Classifier)]
#[classify(retryable, reason = "busy", backoff = wait)]
struct Busy {
    wait: Duration,
}

#[derive(Debug, Classifier)]
#[classify(non_retryable)]
struct Rejected;

#[derive(Debug, Classifier)]
#[classify(abort, backoff = 1)]
struct Halt(u8, Option<Duration>);

#[derive(Debug, Classifier)]
#[classify(transparent)]
struct Io(std::io::Error);

#[derive(Debug, Classifier)]
struct FromRecourse(recourse::Error);

fn main() {
    let busy = Busy { wait: Duration::from_millis(5) }.classify().unwrap();
    assert_eq!(
        (busy.kind, &*busy.reason, busy.backoff),
        (OutcomeKind::Retryable, "busy", Some(Duration::from_millis(5)))
    );

    let rejected = Rejected.classify().unwrap();
    assert_eq!((rejected.kind, &*rejected.reason), (OutcomeKind::NonRetryable, "rejected"));

    let halt = Halt(0, None).classify().unwrap();
    assert_eq!((halt.kind, &*halt.reason, halt.backoff), (OutcomeKind::Abort, "halt", None));

    let io = Io(std::io::ErrorKind::NotFound.into()).classify().unwrap();
    assert_eq!(io.kind, OutcomeKind::NonRetryable);

    let timeout = FromRecourse(recourse::Error::Timeout { timeout: Duration::from_secs(1) }).classify().unwrap();
    assert_eq!((timeout.kind, &*timeout.reason), (OutcomeKind::Abort, "context_deadline_exceeded"));
}
