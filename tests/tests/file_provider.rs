//! `recourse::provider::FileProvider`: policies read from `recourse.toml`
//! or JSON at run time, reloaded on change, last good version kept.
//!
//! These tests use real files (a directory of their own under the system
//! temp directory) and real time: the watcher is a thread reacting to the
//! file system. Waits for it are bounded loops on the provider's
//! generation (10 s), never timed assertions; the calls themselves sleep
//! through a recording no-op sleeper. Every test that starts a watcher
//! holds `WATCHERS`, so the drop test counts only its own threads.
#![cfg(feature = "file")]
#![allow(missing_docs)]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use recourse::policy::catalog::{Builtins, decode};
use recourse::policy::{PolicyKey, PolicySource};
use recourse::provider::{FileProvider, PolicyProvider};
use recourse::{Executor, Timeline, recourse};
use support::{Counter, PolicyErrors, RecordingSleeper, TestError};

/// Serializes the tests that start a watcher (see the module docs).
static WATCHERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The bound on every wait for the watcher.
const PATIENCE: Duration = Duration::from_secs(10);

/// A directory of the test's own, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("recourse-file-provider-{}-{test}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Replaces `path` the way editors and deployment tools do: a new file
/// renamed over the old one, so no reader ever sees half of it.
fn replace(path: &Path, text: &str) {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    fs::write(&temporary, text).unwrap();
    fs::rename(&temporary, path).unwrap();
}

/// Waits (at most `PATIENCE`) until the provider's generation is no longer
/// `seen` and `ready` holds; returns whether it happened.
async fn changed(provider: &FileProvider, seen: u64, ready: impl Fn(&FileProvider) -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < PATIENCE {
        if provider.generation() != seen && ready(provider) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// Lets a new provider's watcher finish its start-up read (which catches
/// changes made while it started), so that a change made next can only be
/// noticed by watching.
async fn started() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The `max_attempts` the provider serves for `key`, if it serves one.
fn attempts_of(provider: &FileProvider, key: &str) -> Option<u32> {
    provider.policy(&PolicyKey::parse_owned(key)).unwrap().map(|p| p.retry.max_attempts)
}

/// A catalog giving `catalog.Reloaded` (declared in `tests/recourse.toml`,
/// used by a `#[recourse]` function below) and `files.Op` (a string key)
/// their attempt counts.
fn catalog(reloaded: u32, op: u32) -> String {
    format!(
        "[policies.\"catalog.Reloaded\"]\nmax_attempts = {reloaded}\ninitial_backoff = \"1ms\"\n\n\
         [policies.\"files.Op\"]\nmax_attempts = {op}\ninitial_backoff = \"1ms\"\n"
    )
}

fn executor(provider: &Arc<FileProvider>, observer: &Arc<PolicyErrors>) -> Executor {
    Executor::builder()
        .provider(Arc::clone(provider))
        .observer(Arc::clone(observer))
        .sleeper(RecordingSleeper::new())
        .jitter_seed(support::SEED)
        .build()
}

// `tests/recourse.toml` gives it 2 attempts; the file overrides that.
#[recourse(policy = "catalog.Reloaded", executor = executor)]
async fn reloaded(executor: &Executor, calls: &Counter) -> Result<(), TestError> {
    Err(TestError::Failed(calls.hit()))
}

/// Attempts of one always-failing call of the `#[recourse]` function, and
/// its timeline.
async fn attempts_reloaded(executor: &Executor) -> (usize, Timeline) {
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(reloaded(executor, &calls)).await;
    assert!(result.is_err());
    (calls.get(), timeline)
}

/// Attempts of one always-failing call of the string key `files.Op`.
async fn attempts_op(executor: &Executor) -> (usize, Timeline) {
    let calls = Counter::new();
    let (result, timeline) = recourse::capture(
        executor.call("files.Op", || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))),
    )
    .await;
    assert!(result.is_err());
    (calls.get(), timeline)
}

#[tokio::test]
async fn a_valid_change_reaches_running_call_sites() {
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("valid-change");
    let path = dir.file("recourse.toml");
    fs::write(&path, catalog(3, 2)).unwrap();
    let provider = Arc::new(FileProvider::new(&path).unwrap());
    let observer = Arc::new(PolicyErrors::default());
    let executor = executor(&provider, &observer);

    let (attempts, timeline) = attempts_reloaded(&executor).await;
    assert_eq!(attempts, 3, "the file's policy, not the catalog's 2");
    assert_eq!(timeline.policy_source, PolicySource::File);
    assert_eq!(attempts_op(&executor).await.0, 2);
    started().await;

    let seen = provider.generation();
    replace(&path, &catalog(5, 4));
    assert!(
        changed(&provider, seen, |p| attempts_of(p, "catalog.Reloaded") == Some(5)).await,
        "the watcher did not pick up the change in {PATIENCE:?}"
    );
    let (attempts, timeline) = attempts_reloaded(&executor).await;
    assert_eq!(attempts, 5, "the running call site re-resolved");
    assert_eq!(timeline.policy_source, PolicySource::File);
    assert_eq!(timeline.attributes.get("policy_error"), None);
    assert_eq!(attempts_op(&executor).await.0, 4, "so did the string key");

    // A key the file no longer names falls back to the call site's catalog
    // policy.
    let seen = provider.generation();
    replace(&path, "[policies.\"files.Op\"]\nmax_attempts = 1\n");
    assert!(changed(&provider, seen, |p| attempts_of(p, "catalog.Reloaded").is_none()).await);
    let (attempts, timeline) = attempts_reloaded(&executor).await;
    assert_eq!((attempts, timeline.policy_source), (2, PolicySource::Catalog));
    assert_eq!(attempts_op(&executor).await.0, 1);
    assert!(observer.take().is_empty(), "no policy error was reported");
    assert_eq!(provider.last_error(), None);
}

#[tokio::test]
async fn an_invalid_change_keeps_the_last_good_policy_and_reports_why() {
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("invalid-change");
    let path = dir.file("recourse.toml");
    let shown = path.display().to_string();
    fs::write(&path, catalog(3, 2)).unwrap();
    let provider = Arc::new(FileProvider::new(&path).unwrap());
    let observer = Arc::new(PolicyErrors::default());
    let executor = executor(&provider, &observer);
    assert_eq!(attempts_reloaded(&executor).await.0, 3);
    started().await;

    let syntax = "[policies.\"catalog.Reloaded\"\nmax_attempts = 4\n";
    let syntax_problem = decode(syntax, &shown, &Builtins::NONE).problems().next().unwrap().to_owned();
    let cases = [
        ("a syntax error", syntax.to_owned(), syntax_problem),
        (
            "an unknown field",
            "[policies.\"catalog.Reloaded\"]\nmax_atempts = 4\n".to_owned(),
            format!(
                "{shown}:2:1: unknown field `max_atempts` in policies.\"catalog.Reloaded\"; did you mean `max_attempts`?"
            ),
        ),
        (
            "a value out of range",
            "[policies.\"catalog.Reloaded\"]\nmax_attempts = 50\n".to_owned(),
            format!("{shown}:2:16: policies.\"catalog.Reloaded\".max_attempts = 50 is out of range (1..=10)"),
        ),
    ];
    let mut good = 3;
    for (case, text, problem) in cases {
        assert!(problem.starts_with(&format!("{shown}:")), "{case}: {problem}");
        let seen = provider.generation();
        replace(&path, &text);
        assert!(changed(&provider, seen, |p| p.last_error().is_some()).await, "{case}: not noticed");

        let error = provider.last_error().unwrap();
        let mut lines = error.lines();
        assert_eq!(lines.next(), Some(format!("recourse: policy file {shown} not loaded:").as_str()), "{case}");
        assert_eq!(lines.collect::<Vec<_>>(), [problem.as_str()], "{case}: every problem, with line:column");

        for call in 0..2 {
            let (attempts, timeline) = attempts_reloaded(&executor).await;
            assert_eq!(attempts, good as usize, "{case}: the last good policy still applies");
            assert_eq!(timeline.policy_source, PolicySource::File, "{case}");
            assert_eq!(timeline.attributes.get("policy_error"), Some(&*error), "{case}");
            if call == 0 {
                let reported = observer.take();
                assert_eq!(
                    reported,
                    [("catalog.Reloaded".to_owned(), error.to_string())],
                    "{case}: once per resolution"
                );
            }
        }
        assert!(observer.take().is_empty(), "{case}: not again while nothing changed");

        // A valid change clears it.
        good += 1;
        let seen = provider.generation();
        replace(&path, &catalog(good, 2));
        assert!(changed(&provider, seen, |p| p.last_error().is_none()).await, "{case}: the fix was not noticed");
        let (attempts, timeline) = attempts_reloaded(&executor).await;
        assert_eq!(attempts, good as usize, "{case}: the fixed file applies");
        assert_eq!(timeline.attributes.get("policy_error"), None, "{case}");
        assert!(observer.take().is_empty(), "{case}");
    }
}

#[tokio::test]
async fn a_deleted_file_keeps_the_policy_until_it_is_back() {
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("deleted");
    let path = dir.file("recourse.toml");
    fs::write(&path, catalog(3, 2)).unwrap();
    let provider = Arc::new(FileProvider::new(&path).unwrap());
    let observer = Arc::new(PolicyErrors::default());
    let executor = executor(&provider, &observer);
    assert_eq!(attempts_reloaded(&executor).await.0, 3);
    started().await;

    let seen = provider.generation();
    fs::remove_file(&path).unwrap();
    assert!(changed(&provider, seen, |p| p.last_error().is_some()).await, "the deletion was not noticed");
    let error = provider.last_error().unwrap();
    assert!(error.contains(&format!("{}: cannot be read: ", path.display())), "{error}");
    let (attempts, timeline) = attempts_reloaded(&executor).await;
    assert_eq!(attempts, 3, "the last good policy still applies");
    assert_eq!(timeline.attributes.get("policy_error"), Some(&*error));
    assert_eq!(observer.take(), [("catalog.Reloaded".to_owned(), error.to_string())]);
    assert_eq!(provider.reload().unwrap_err().to_string(), *error, "an explicit reload says the same");

    let seen = provider.generation();
    fs::write(&path, catalog(6, 2)).unwrap();
    assert!(
        changed(&provider, seen, |p| p.last_error().is_none() && attempts_of(p, "catalog.Reloaded") == Some(6)).await,
        "the recreated file was not noticed"
    );
    let (attempts, timeline) = attempts_reloaded(&executor).await;
    assert_eq!(attempts, 6);
    assert_eq!(timeline.attributes.get("policy_error"), None);
}

#[tokio::test]
async fn polling_picks_up_a_change() {
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("polling");
    let path = dir.file("recourse.toml");
    fs::write(&path, catalog(3, 2)).unwrap();
    let provider = Arc::new(FileProvider::builder(&path).poll_interval(Duration::from_millis(50)).build().unwrap());
    assert!(format!("{provider:?}").contains("watching: Some(\"poll\")"), "{provider:?}");
    let observer = Arc::new(PolicyErrors::default());
    let executor = executor(&provider, &observer);
    assert_eq!(attempts_op(&executor).await.0, 2);
    started().await;

    // Written in place, within the same second: polling compares content.
    let seen = provider.generation();
    fs::write(&path, catalog(3, 7)).unwrap();
    assert!(changed(&provider, seen, |p| attempts_of(p, "files.Op") == Some(7)).await, "polling missed the change");
    assert_eq!(attempts_op(&executor).await.0, 7);

    // And a deletion, then the file coming back.
    let seen = provider.generation();
    fs::remove_file(&path).unwrap();
    assert!(changed(&provider, seen, |p| p.last_error().is_some()).await, "polling missed the deletion");
    let seen = provider.generation();
    fs::write(&path, catalog(3, 5)).unwrap();
    assert!(changed(&provider, seen, |p| p.last_error().is_none()).await, "polling missed the new file");
    assert_eq!(attempts_op(&executor).await.0, 5);
}

#[tokio::test]
async fn identical_content_changes_nothing() {
    let dir = TempDir::new("identical");
    let path = dir.file("recourse.toml");
    fs::write(&path, catalog(3, 2)).unwrap();
    let provider = FileProvider::builder(&path).watch(false).build().unwrap();
    assert_eq!(provider.path(), path);
    assert!(format!("{provider:?}").contains("watching: None"), "{provider:?}");
    let start = provider.generation();

    provider.reload().unwrap();
    fs::write(&path, catalog(3, 2)).unwrap();
    provider.reload().unwrap();
    assert_eq!(provider.generation(), start, "the same content is no change");
    fs::write(&path, format!("# the same policies\n{}", catalog(3, 2))).unwrap();
    provider.reload().unwrap();
    assert_eq!(provider.generation(), start, "nor are the same policies");

    fs::write(&path, "[policies.\"files.Op\"]\nmax_attempts = 0\n").unwrap();
    let error = provider.reload().unwrap_err();
    assert_eq!(provider.generation(), start + 1, "an error is a change");
    assert_eq!(provider.reload().unwrap_err(), error);
    assert_eq!(provider.generation(), start + 1, "the same error is not");
    let policy = provider.policy(&"files.Op".into()).unwrap().unwrap();
    assert_eq!((policy.retry.max_attempts, policy.meta.error.as_deref()), (2, Some(&*error.to_string())));

    // The old content again: the error is cleared, the policies stay.
    fs::write(&path, catalog(3, 2)).unwrap();
    provider.reload().unwrap();
    assert_eq!(provider.generation(), start + 2);
    assert_eq!(provider.last_error(), None);
    let policy = provider.policy(&"files.Op".into()).unwrap().unwrap();
    assert_eq!((policy.retry.max_attempts, policy.meta.error.as_deref()), (2, None));
    assert!(provider.policy(&"files.Other".into()).unwrap().is_none(), "keys not in the file are not mine");
    // Without a watcher, a change waits for `reload`.
    fs::write(&path, catalog(4, 4)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(provider.generation(), start + 2);
}

#[tokio::test]
async fn json_in_the_go_layout_loads() {
    let dir = TempDir::new("json");
    let path = dir.file("policies.json");
    let go = r#"{"policies": [{"key": "svc.Op", "retry": {"max_attempts": 4, "initial_backoff": 1000000}},
                 {"key": {"namespace": "svc", "name": "Other"}, "retry": {"max_attempts": 1}}]}"#;
    fs::write(&path, go).unwrap();
    let provider = Arc::new(FileProvider::builder(&path).watch(false).build().unwrap());
    let policy = provider.policy(&"svc.Op".into()).unwrap().unwrap();
    assert_eq!(policy.retry.max_attempts, 4);
    assert_eq!(policy.retry.initial_backoff, Duration::from_millis(1));
    assert_eq!(policy.meta.source, PolicySource::File);
    assert_eq!(attempts_of(&provider, "svc.Other"), Some(1));

    let executor = Executor::builder().provider(Arc::clone(&provider)).sleeper(RecordingSleeper::new()).build();
    let calls = Counter::new();
    let result = executor.call("svc.Op", || std::future::ready(Err::<(), _>(TestError::Failed(calls.hit())))).await;
    assert!(result.is_err());
    assert_eq!(calls.get(), 4);

    // A reload that fails the JSON decoder keeps the policies.
    fs::write(&path, r#"{"key": "svc.Op", "retry": {"max_atempts": 2}}"#).unwrap();
    let error = provider.reload().unwrap_err();
    assert_eq!(
        error.problems(),
        [format!("{}: unknown field `max_atempts` in retry; did you mean `max_attempts`?", path.display())]
    );
    assert_eq!(attempts_of(&provider, "svc.Op"), Some(4));
}

#[test]
fn a_json_policy_without_a_key_is_an_error_at_build() {
    let dir = TempDir::new("json-keyless");
    let path = dir.file("policies.JSON");
    fs::write(&path, r#"{"policies": [{"key": "svc.Op"}, {"retry": {"max_attempts": 2}}]}"#).unwrap();
    let error = FileProvider::new(&path).unwrap_err();
    assert_eq!(error.path(), path);
    assert_eq!(error.problems().len(), 1, "{error}");
    assert!(error.problems()[0].starts_with(&format!("{}: policy #2 has no key", path.display())), "{error}");

    fs::write(&path, r#"[{"key": "svc.Op"}, {"key": "svc.Op"}]"#).unwrap();
    let error = FileProvider::new(&path).unwrap_err();
    assert!(error.problems()[0].contains("key \"svc.Op\" is given more than once"), "{error}");
}

#[test]
fn a_missing_or_invalid_file_at_start_up_is_an_error_listing_every_problem() {
    let dir = TempDir::new("start-up");
    let path = dir.file("recourse.toml");
    let shown = path.display().to_string();

    let error = FileProvider::new(&path).unwrap_err();
    assert_eq!(error.problems().len(), 1, "{error}");
    assert!(error.problems()[0].starts_with(&format!("{shown}: cannot be read: ")), "{error}");

    fs::write(
        &path,
        "[policies.\"svc.Op\"]\nmax_attempts = 50\njitter = \"ful\"\nclassifier = \"htp\"\n\n[polices.x]\n",
    )
    .unwrap();
    let error = FileProvider::builder(&path).watch(false).build().unwrap_err();
    let text = error.to_string();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(format!("recourse: policy file {shown} not loaded:").as_str()));
    assert_eq!(lines.collect::<Vec<_>>(), error.problems(), "Display lists every problem");
    assert_eq!(error.problems().len(), 4, "{text}");
    for expected in [
        format!("{shown}:6:2: unknown field `polices` in the catalog"),
        format!("{shown}:2:16: policies.\"svc.Op\".max_attempts = 50 is out of range (1..=10)"),
        format!("{shown}:3:10:"),
        format!("{shown}:1:11: policies.\"svc.Op\".classifier = \"htp\" is not a known classifier"),
    ] {
        assert!(error.problems().iter().any(|p| p.starts_with(&expected)), "{expected}\nnot in\n{text}");
    }

    // A file too large to be a policy file is not read whole.
    fs::File::create(&path).unwrap().set_len(17 << 20).unwrap();
    let error = FileProvider::new(&path).unwrap_err();
    assert_eq!(error.problems(), [format!("{shown}: larger than 16 MiB; not a policy file")]);

    // Names the file declares, and the runtime's built-ins, are known.
    fs::write(
        &path,
        "[policies.\"svc.Op\"]\nclassifier = \"mine\"\nbudget = \"unlimited\"\n[policies.\"svc.Op\".hedge]\ntrigger = \"p99\"\n\
         [classifiers]\nnames = [\"mine\"]\n",
    )
    .unwrap();
    let provider = FileProvider::builder(&path).watch(false).build().unwrap();
    assert_eq!(provider.policy(&"svc.Op".into()).unwrap().unwrap().retry.classifier, "mine");
}

// Kubernetes mounts a config map's file as a link into `..data`, itself a
// link swapped by a rename to a new directory on every update: the file's
// own name never appears among the directory's changes.
#[cfg(unix)]
#[tokio::test]
async fn a_linked_file_is_reloaded_when_its_link_target_is_swapped() {
    use std::os::unix::fs::symlink;
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("linked");
    let version = |n: u32| {
        let data = dir.file(&format!("..v{n}"));
        fs::create_dir(&data).unwrap();
        fs::write(data.join("recourse.toml"), catalog(3, n)).unwrap();
        symlink(format!("..v{n}"), dir.file("..data_tmp")).unwrap();
        fs::rename(dir.file("..data_tmp"), dir.file("..data")).unwrap();
    };
    version(1);
    let path = dir.file("recourse.toml");
    symlink("..data/recourse.toml", &path).unwrap();
    let provider = FileProvider::new(&path).unwrap();
    assert_eq!(attempts_of(&provider, "files.Op"), Some(1));
    started().await;

    let seen = provider.generation();
    version(2);
    assert!(changed(&provider, seen, |p| attempts_of(p, "files.Op") == Some(2)).await, "the swap was missed");
}

/// How many threads of this process are the provider's (`recourse-file`)
/// and notify's (`notify-rs ...`).
#[cfg(target_os = "linux")]
fn watcher_threads() -> (usize, usize) {
    let names: Vec<String> = fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|task| fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .collect();
    let count = |prefix: &str| names.iter().filter(|name| name.starts_with(prefix)).count();
    (count("recourse-file"), count("notify-rs"))
}

/// Waits (at most `PATIENCE`) until the watcher threads number `expected`
/// (a new thread names itself once it runs).
#[cfg(target_os = "linux")]
fn threads_become(expected: (usize, usize)) -> bool {
    let start = Instant::now();
    while watcher_threads() != expected && start.elapsed() < PATIENCE {
        std::thread::sleep(Duration::from_millis(10));
    }
    watcher_threads() == expected
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn dropping_the_provider_stops_the_watcher() {
    let _watchers = WATCHERS.lock().await;
    let dir = TempDir::new("drop");
    let path = dir.file("recourse.toml");
    fs::write(&path, catalog(3, 2)).unwrap();
    // The other tests' watchers (stopped when they ended) are gone.
    assert!(threads_become((0, 0)), "watchers left running: {:?}", watcher_threads());
    for poll in [false, true] {
        let builder = FileProvider::builder(&path);
        let builder = if poll { builder.poll_interval(Duration::from_millis(20)) } else { builder };
        let provider = Arc::new(builder.build().unwrap());
        let executor = Executor::builder().provider(Arc::clone(&provider)).build();
        assert!(threads_become((1, 1)), "poll: {poll}: {:?}", watcher_threads());
        drop(executor);
        drop(provider);
        assert!(threads_become((0, 0)), "poll: {poll}: the watcher did not stop: {:?}", watcher_threads());
        // Changes after the drop find nobody listening (and crash nothing).
        fs::write(&path, catalog(4, 2)).unwrap();
    }
}
