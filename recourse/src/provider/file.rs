//! `FileProvider`: policies read from a file at run time and reloaded when
//! it changes (cargo feature `file`).
//!
//! The provider's state (`Shared`) is what `policy()` reads, lock-free,
//! through a `DynamicProvider`; reloads are serialized by a mutex that the
//! read path never takes. The notification backend forwards the events
//! that concern the file to a thread of ours, which waits for a burst to
//! settle and reloads through a `Weak` (so the provider's drop frees
//! everything), and which a `Stop` from the provider's drop ends.

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};

use super::{DynamicProvider, PolicyProvider, ProviderError, StaticProvider};
use crate::policy::catalog::{self, Builtins};
use crate::policy::{Policy, PolicyKey, PolicySource, json};

/// How long the watcher waits for a burst of events (an editor's
/// truncate, write, close; a rename over the file) to end before reading.
const SETTLE: Duration = Duration::from_millis(30);
/// The longest a steady stream of events may postpone a reload.
const SETTLE_AT_MOST: Duration = Duration::from_millis(500);
/// The largest file read (a policy file is a few KiB; this bounds the
/// memory a wrong path can take).
const MAX_SIZE: u64 = 16 << 20;
/// The shortest polling interval (a zero interval would spin).
const MIN_POLL: Duration = Duration::from_millis(10);

/// Policies read from `recourse.toml` or a JSON file, reloaded when the file
/// changes, keeping the last good version when a change is invalid.
///
/// The format goes by the extension: `.json` is a JSON policy document in
/// the Go original's layout ([`json::decode`]; every policy must name its
/// key), anything else the `recourse.toml` catalog, read by the very reader
/// the compile-time check uses ([`catalog::decode`]): every value is
/// checked against the same limits, and every classifier, budget and hedge
/// trigger a policy names must be built in or declared in the file
/// (`[classifiers] names`, `[budgets.<name>]`, `[triggers] names`). Every
/// policy served has source [`PolicySource::File`] and is normalized; keys
/// the file does not name are "not mine" (`Ok(None)`), so the call site's
/// compiled policy or the default applies.
///
/// The initial load must succeed: a missing, unreadable or invalid file at
/// start-up is a [`FileError`] listing every problem. After that the file
/// is watched (its directory, since editors and deployment tools replace
/// files by renaming; every change in the directory counts when the file
/// is a symbolic link, as Kubernetes mounts its config maps) and read again
/// once a burst of changes settles:
///
/// * a valid new version is swapped in and the
///   [generation](PolicyProvider::generation) bumps, so running call sites
///   re-resolve on their next call;
/// * an invalid version, or a deleted or unreadable file, keeps the last
///   good policies and serves them with [`Metadata::error`] set to the
///   [`FileError`]'s text (the first line names the file, then one problem
///   per line, with `line:column`): timelines record it as `policy_error`,
///   observers hear [`on_policy_error`] once per resolution, and
///   [`last_error`](Self::last_error) returns it. A later valid version
///   clears it;
/// * content identical to what is served changes nothing (no generation
///   bump).
///
/// Reads are lock-free (one `ArcSwap` load, as [`DynamicProvider`]'s);
/// files are read and decoded on the watcher's thread or in
/// [`reload`](Self::reload), never on the call path. Dropping the provider
/// stops the watcher. The watched directory itself must stay: one that is
/// deleted and recreated is not watched again.
///
/// Build it with [`FileProvider::new`] (the platform's file notification,
/// falling back to polling every second when that is unavailable) or
/// [`FileProvider::builder`], and hand it to
/// [`ExecutorBuilder::provider`](crate::ExecutorBuilder::provider), in an
/// `Arc` to keep a handle for [`reload`](Self::reload) and
/// [`last_error`](Self::last_error). Under a
/// [`LayeredProvider`](super::LayeredProvider) with a catalog, a file
/// policy for a key the catalog does not declare is rejected.
///
/// [`Metadata::error`]: crate::policy::Metadata::error
/// [`on_policy_error`]: crate::observe::Observer::on_policy_error
///
/// ```
/// use recourse::policy::PolicySource;
/// use recourse::provider::{FileProvider, PolicyProvider};
///
/// let dir = std::env::temp_dir().join(format!("recourse-file-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("recourse.toml");
/// std::fs::write(&path, "[policies.\"users.Get\"]\nmax_attempts = 4\ninitial_backoff = \"20ms\"\n").unwrap();
///
/// let provider = FileProvider::builder(&path).watch(false).build().unwrap();
/// let policy = provider.policy(&"users.Get".into()).unwrap().unwrap();
/// assert_eq!(policy.retry.max_attempts, 4);
/// assert_eq!(policy.meta.source, PolicySource::File);
/// assert!(provider.policy(&"users.Put".into()).unwrap().is_none());
///
/// // An invalid version keeps the last good policies, with the reason.
/// std::fs::write(&path, "[policies.\"users.Get\"]\nmax_attempts = 50\n").unwrap();
/// let error = provider.reload().unwrap_err();
/// assert!(error.to_string().contains("max_attempts = 50 is out of range"));
/// let policy = provider.policy(&"users.Get".into()).unwrap().unwrap();
/// assert_eq!(policy.retry.max_attempts, 4);
/// assert!(policy.meta.error.is_some());
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub struct FileProvider {
    shared: Arc<Shared>,
    watch: Option<Watch>,
}

/// Options for a [`FileProvider`]; made by [`FileProvider::builder`].
#[derive(Debug, Clone)]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub struct FileProviderBuilder {
    path: PathBuf,
    poll_interval: Option<Duration>,
    watch: bool,
}

/// A policy file that could not be used, with every problem found.
///
/// Its text (the first line names the file, then one problem per line) is
/// also what [`FileProvider::last_error`] returns and what the last good
/// policies carry as `policy_error` after a rejected reload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.path, .problems))]
#[non_exhaustive]
#[cfg_attr(docsrs, doc(cfg(feature = "file")))]
pub struct FileError {
    path: PathBuf,
    problems: Vec<String>,
}

impl FileError {
    fn new(path: &Path, problems: Vec<String>) -> Self {
        Self { path: path.to_path_buf(), problems }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every problem, one message each (`file:line:column: ...` where the
    /// position is known).
    pub fn problems(&self) -> &[String] {
        &self.problems
    }
}

fn render(path: &Path, problems: &[String]) -> String {
    let mut text = format!("recourse: policy file {} not loaded:", path.display());
    for problem in problems {
        text.push('\n');
        text.push_str(problem);
    }
    text
}

impl FileProvider {
    /// A provider for `path` with the defaults: watched with the platform's
    /// file notification (polling when that is unavailable).
    pub fn new(path: impl AsRef<Path>) -> Result<Self, FileError> {
        Self::builder(path).build()
    }

    /// Options for a provider reading `path`: `.json` is a JSON policy
    /// document, anything else the `recourse.toml` catalog.
    pub fn builder(path: impl AsRef<Path>) -> FileProviderBuilder {
        FileProviderBuilder { path: path.as_ref().to_path_buf(), poll_interval: None, watch: true }
    }

    /// Reads the file again now (what the watcher does on a change).
    ///
    /// A valid file replaces the policies (and clears the last error); an
    /// invalid, missing or unreadable one keeps the last good policies,
    /// serves them with the error as [`Metadata::error`], and returns it.
    /// The generation bumps only when an answer changes.
    ///
    /// [`Metadata::error`]: crate::policy::Metadata::error
    pub fn reload(&self) -> Result<(), FileError> {
        self.shared.reload()
    }

    /// Why the last reload was rejected, if the policies served are not the
    /// file's current content (`None` once a valid version is loaded).
    pub fn last_error(&self) -> Option<Arc<str>> {
        self.shared.state().error.clone()
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }
}

impl FileProviderBuilder {
    /// Polls the file every `interval` instead of using the platform's file
    /// notification (for file systems that have none, such as some network
    /// mounts). Intervals under 10 ms are raised to 10 ms.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = Some(interval);
        self
    }

    /// Whether to reload when the file changes (default `true`); with
    /// `false` the file is read at [`build`](Self::build) and on
    /// [`FileProvider::reload`] only.
    pub fn watch(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Loads the file and starts watching it. Fails, listing every problem,
    /// when the file is missing, unreadable or invalid, or when it cannot be
    /// watched.
    pub fn build(self) -> Result<FileProvider, FileError> {
        let shared = Arc::new(Shared::new(self.path));
        shared.reload()?;
        let watch = if self.watch { Some(Watch::start(&shared, self.poll_interval)?) } else { None };
        Ok(FileProvider { shared, watch })
    }
}

impl PolicyProvider for FileProvider {
    fn policy(&self, key: &PolicyKey) -> Result<Option<Arc<Policy>>, ProviderError> {
        self.shared.served.policy(key)
    }

    fn generation(&self) -> u64 {
        self.shared.served.generation()
    }
}

impl fmt::Debug for FileProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileProvider")
            .field("path", &self.shared.path)
            .field("format", &self.shared.format)
            .field("watching", &self.watch.as_ref().filter(|w| w.running()).map(|w| w.kind))
            .field("generation", &self.generation())
            .field("last_error", &self.last_error())
            .finish()
    }
}

/// The file's format, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Toml,
    Json,
}

/// What the provider and its watcher thread share. The thread holds it
/// only through a `Weak`, so dropping the provider frees it.
struct Shared {
    path: PathBuf,
    /// The path as messages show it.
    shown: String,
    format: Format,
    /// Names a catalog policy may reference without declaring them.
    builtins: BuiltinNames,
    /// What `policy()` reads: lock-free, with the generation.
    served: DynamicProvider,
    /// Reload bookkeeping; never touched by `policy()`.
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The content the served policies were decoded from.
    good_text: Option<String>,
    /// Those policies, without any error.
    good: Vec<Policy>,
    /// Why the served policies are not the file's current content.
    error: Option<Arc<str>>,
}

/// The runtime registries' built-in names, for the catalog's name check.
struct BuiltinNames {
    classifiers: Vec<String>,
    budgets: Vec<String>,
    triggers: Vec<String>,
}

impl BuiltinNames {
    fn of_registries() -> Self {
        Self {
            classifiers: crate::classify::Registry::with_builtins().names(),
            budgets: crate::budget::Registry::with_builtins().names(),
            triggers: crate::hedge::Registry::with_builtins().names(),
        }
    }
}

impl Shared {
    fn new(path: PathBuf) -> Self {
        let json = path.extension().is_some_and(|ext| ext.eq_ignore_ascii_case("json"));
        Self {
            shown: path.display().to_string(),
            format: if json { Format::Json } else { Format::Toml },
            builtins: BuiltinNames::of_registries(),
            served: DynamicProvider::new(),
            state: Mutex::new(State::default()),
            path,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Nothing under the lock panics (the decoders never do), and each
        // field is written whole: a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file's text, or why it cannot be had.
    fn read(&self) -> Result<String, String> {
        let cannot = |error: io::Error| format!("{}: cannot be read: {error}", self.shown);
        let mut text = String::new();
        fs::File::open(&self.path)
            .and_then(|file| file.take(MAX_SIZE + 1).read_to_string(&mut text))
            .map_err(cannot)?;
        if text.len() as u64 > MAX_SIZE {
            return Err(format!("{}: larger than {} MiB; not a policy file", self.shown, MAX_SIZE >> 20));
        }
        Ok(text)
    }

    fn reload(&self) -> Result<(), FileError> {
        let mut state = self.state();
        let decoded = match self.read() {
            Err(problem) => Err(vec![problem]),
            Ok(text) if state.good_text.as_deref() == Some(text.as_str()) => Ok(None),
            Ok(text) => self.decode(&text).map(|policies| Some((text, policies))),
        };
        match decoded {
            // The content already served: only a pending error to clear.
            Ok(None) => {
                if state.error.take().is_some() {
                    self.served.replace(serve(&state.good, None));
                }
                Ok(())
            }
            Ok(Some((text, policies))) => {
                // A new text with the same policies (a comment, say) is no
                // change to the answers.
                if state.error.is_some() || policies != state.good {
                    self.served.replace(serve(&policies, None));
                }
                *state = State { good_text: Some(text), good: policies, error: None };
                Ok(())
            }
            Err(problems) => {
                let error = FileError::new(&self.path, problems);
                let text = error.to_string();
                if state.error.as_deref() != Some(text.as_str()) {
                    let text: Arc<str> = text.into();
                    self.served.replace(serve(&state.good, Some(&text)));
                    state.error = Some(text);
                }
                Err(error)
            }
        }
    }

    /// Every policy of `text`, or every problem.
    fn decode(&self, text: &str) -> Result<Vec<Policy>, Vec<String>> {
        match self.format {
            Format::Toml => {
                let names = &self.builtins;
                let classifiers: Vec<&str> = names.classifiers.iter().map(String::as_str).collect();
                let budgets: Vec<&str> = names.budgets.iter().map(String::as_str).collect();
                let triggers: Vec<&str> = names.triggers.iter().map(String::as_str).collect();
                let builtins = Builtins { classifiers: &classifiers, budgets: &budgets, triggers: &triggers };
                let doc = catalog::decode(text, &self.shown, &builtins);
                if doc.is_valid() {
                    Ok(doc.policies(PolicySource::File).collect())
                } else {
                    Err(doc.problems().map(str::to_owned).collect())
                }
            }
            Format::Json => Ok(json::decode_keyed(text, &self.shown)?
                .into_iter()
                .map(|(key, spec)| spec.to_policy(key, PolicySource::File))
                .collect()),
        }
    }
}

/// A provider serving `policies`, each carrying `error` when given.
fn serve(policies: &[Policy], error: Option<&Arc<str>>) -> StaticProvider {
    let mut served = StaticProvider::new();
    for policy in policies {
        let mut policy = policy.clone();
        policy.meta.error = error.cloned();
        served.insert(policy);
    }
    served
}

/// A running watcher: the notification backend and the thread that reloads.
struct Watch {
    /// `"native"` or `"poll"`.
    kind: &'static str,
    /// Stops watching when dropped.
    _watcher: Box<dyn Watcher + Send + Sync>,
    /// Tells the thread to stop (the backend's own sender may outlive it).
    stop: Sender<Signal>,
    /// Not joined (see `Drop`); `Debug` tells whether it still runs.
    thread: Option<JoinHandle<()>>,
}

enum Signal {
    Changed,
    Stop,
}

impl Watch {
    fn start(shared: &Arc<Shared>, poll_interval: Option<Duration>) -> Result<Self, FileError> {
        let fail = |problem: String| FileError::new(&shared.path, vec![format!("{}: {problem}", shared.shown)]);
        let path = &shared.path;
        let file_name = path.file_name().map(OsString::from).ok_or_else(|| fail("not a file name".to_owned()))?;
        // A linked file (a Kubernetes config map's) changes when a link
        // elsewhere in its directory is swapped: any change there counts.
        let linked = fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
        let filter = Filter { file_name, any: linked };
        let (sender, receiver) = mpsc::channel();
        let (kind, watcher): (_, Box<dyn Watcher + Send + Sync>) = match poll_interval {
            Some(interval) => ("poll", Box::new(poll(path, interval, handler(filter, sender.clone())).map_err(&fail)?)),
            None => match native(path, handler(filter.clone(), sender.clone())) {
                Ok(watcher) => ("native", Box::new(watcher)),
                Err(native_error) => {
                    let interval = Duration::from_secs(1);
                    let watcher = poll(path, interval, handler(filter, sender.clone()))
                        .map_err(|poll_error| fail(format!("{native_error}; {poll_error}")))?;
                    ("poll", Box::new(watcher))
                }
            },
        };
        let weak = Arc::downgrade(shared);
        let thread = std::thread::Builder::new()
            .name("recourse-file".to_owned())
            .spawn(move || run(&weak, &receiver))
            .map_err(|error| fail(format!("cannot start the watcher thread: {error}")))?;
        // A change between the initial read and the watch is read now.
        let _ = sender.send(Signal::Changed);
        Ok(Self { kind, _watcher: watcher, stop: sender, thread: Some(thread) })
    }

    /// Whether the reloading thread still runs.
    fn running(&self) -> bool {
        self.thread.as_ref().is_some_and(|thread| !thread.is_finished())
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // The thread exits on `Stop` (or when it finds the state gone); it
        // is not joined, so a drop never waits for a slow file system.
        let _ = self.stop.send(Signal::Stop);
    }
}

/// Watches `path`'s directory with the platform's notification.
fn native(path: &Path, handler: impl notify::EventHandler) -> Result<RecommendedWatcher, String> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let mut watcher = notify::recommended_watcher(handler).map_err(|e| format!("cannot watch for changes: {e}"))?;
    watcher
        .watch(directory, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {} for changes: {e}", directory.display()))?;
    Ok(watcher)
}

/// Polls `path` every `interval`, comparing content (modification times
/// have a one-second resolution there).
fn poll(path: &Path, interval: Duration, handler: impl notify::EventHandler) -> Result<PollWatcher, String> {
    let config = notify::Config::default().with_poll_interval(interval.max(MIN_POLL)).with_compare_contents(true);
    let mut watcher = PollWatcher::new(handler, config).map_err(|e| format!("cannot poll for changes: {e}"))?;
    watcher.watch(path, RecursiveMode::NonRecursive).map_err(|e| format!("cannot poll for changes: {e}"))?;
    Ok(watcher)
}

/// Which events concern the file.
#[derive(Clone)]
struct Filter {
    file_name: OsString,
    /// Every change in the directory counts (the file is a symlink).
    any: bool,
}

impl Filter {
    fn concerns(&self, event: &notify::Result<Event>) -> bool {
        let Ok(event) = event else {
            // A lost or failed notification: read the file to be sure.
            return true;
        };
        // Reads (ours included) are no change; a writer closing the file is.
        if let EventKind::Access(access) = event.kind
            && access != AccessKind::Close(AccessMode::Write)
        {
            return false;
        }
        self.any
            || event.paths.is_empty()
            || event.paths.iter().any(|path| path.file_name() == Some(self.file_name.as_os_str()))
    }
}

/// The backend's callback: forwards the events that concern the file.
fn handler(filter: Filter, sender: Sender<Signal>) -> impl FnMut(notify::Result<Event>) + Send + 'static {
    move |event| {
        if filter.concerns(&event) {
            let _ = sender.send(Signal::Changed);
        }
    }
}

/// The watcher thread: after each burst of changes settles, reloads, as
/// long as the provider lives.
fn run(shared: &Weak<Shared>, signals: &Receiver<Signal>) {
    while let Ok(Signal::Changed) = signals.recv() {
        let first = Instant::now();
        loop {
            let wait = SETTLE.min(SETTLE_AT_MOST.saturating_sub(first.elapsed()));
            match signals.recv_timeout(wait) {
                Ok(Signal::Changed) if !wait.is_zero() => {}
                Ok(Signal::Changed) | Err(RecvTimeoutError::Timeout) => break,
                Ok(Signal::Stop) | Err(RecvTimeoutError::Disconnected) => return,
            }
        }
        let Some(shared) = shared.upgrade() else { return };
        // A rejected version is recorded in the state; nobody to tell here.
        let _ = shared.reload();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("recourse-file-unit-{}-{name}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn finished_within(thread: &JoinHandle<()>, bound: Duration) -> bool {
        let start = Instant::now();
        while !thread.is_finished() && start.elapsed() < bound {
            std::thread::sleep(Duration::from_millis(5));
        }
        thread.is_finished()
    }

    #[test]
    fn dropping_the_provider_frees_its_state_and_ends_the_thread() {
        for poll_interval in [None, Some(Duration::from_millis(20))] {
            let dir = TempDir::new(&format!("drop-{}", poll_interval.is_some()));
            let path = dir.0.join("recourse.toml");
            fs::write(&path, "[policies.\"a.b\"]\nmax_attempts = 2\n").unwrap();
            let mut builder = FileProvider::builder(&path);
            if let Some(interval) = poll_interval {
                builder = builder.poll_interval(interval);
            }
            let mut provider = builder.build().unwrap();
            let thread = provider.watch.as_mut().and_then(|w| w.thread.take()).unwrap();
            // Once the start-up read is done (it settles for 30 ms), the
            // thread holds no strong reference while it waits.
            std::thread::sleep(Duration::from_millis(100));
            let start = Instant::now();
            while Arc::strong_count(&provider.shared) > 1 && start.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            assert_eq!(Arc::strong_count(&provider.shared), 1);
            assert!(!thread.is_finished());
            let shared = Arc::downgrade(&provider.shared);
            drop(provider);
            assert!(finished_within(&thread, Duration::from_secs(10)), "the watcher thread exits");
            assert!(shared.upgrade().is_none(), "the state is freed");
            thread.join().unwrap();
        }
    }

    #[test]
    fn the_thread_ends_when_the_state_is_gone_even_without_stop() {
        let (sender, receiver) = mpsc::channel();
        let shared = Arc::new(Shared::new(PathBuf::from("missing.toml")));
        let weak = Arc::downgrade(&shared);
        drop(shared);
        let thread = std::thread::spawn(move || run(&weak, &receiver));
        sender.send(Signal::Changed).unwrap();
        assert!(finished_within(&thread, Duration::from_secs(10)));
    }

    #[test]
    fn events_are_filtered_to_the_file() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind};
        let filter = Filter { file_name: "recourse.toml".into(), any: false };
        let event = |kind, path: &str| Ok(Event::new(kind).add_path(PathBuf::from(path)));
        assert!(filter.concerns(&event(EventKind::Modify(ModifyKind::Any), "/d/recourse.toml")));
        assert!(filter.concerns(&event(EventKind::Create(CreateKind::File), "./recourse.toml")));
        assert!(filter.concerns(&event(EventKind::Remove(RemoveKind::File), "/d/recourse.toml")));
        assert!(filter.concerns(&event(EventKind::Access(AccessKind::Close(AccessMode::Write)), "/d/recourse.toml")));
        assert!(!filter.concerns(&event(EventKind::Access(AccessKind::Open(AccessMode::Any)), "/d/recourse.toml")));
        assert!(!filter.concerns(&event(EventKind::Modify(ModifyKind::Any), "/d/other.toml")));
        assert!(filter.concerns(&Err(notify::Error::generic("lost"))));
        let linked = Filter { any: true, ..filter };
        assert!(linked.concerns(&event(EventKind::Create(CreateKind::Any), "/d/..data")));
    }
}
