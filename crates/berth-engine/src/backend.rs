//! What each API router may ask of the engine: one small trait per router
//! (containers, exec, images, networks, volumes, build, system), so that a
//! router sees only its part and can be tested against a fake. `Arc<Engine>`
//! implements them all; the engine alone emits events.

use crate::archive::PathStat;
use crate::build::{BuildContext, BuildOptions};
use crate::commit::CommitOptions;
use crate::events::Event;
use crate::exec::PreparedExec;
use crate::images::pull::PullOptions;
use crate::images::push::PushOptions;
use crate::images::registry::{AuthConfig, Sink};
use crate::images::ImportOptions;
use crate::{Engine, LogOptions, Result};
use berth_api::DistributionInspect;
use berth_api::{
    ContainerInspect, ContainerSummary, ContainerTopResponse, ContainerUpdateResponse,
    CreateRequest, DiskUsage, EndpointSettings, ExecConfig, ExecInspect, HistoryItem, HostConfig,
    ImageDeleteItem, ImageInspect, ImageSummary, JsonMessage, NetworkCreateRequest,
    NetworkCreateResponse, NetworkResource, StatsResponse, Volume, VolumeCreateRequest, VolumeList,
};
use berth_store::changes::Change;
use berth_store::LoadReport;
use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::io::BufReader;
use tokio::net::UnixStream;

/// Docker's `filters` query parameter, parsed.
pub type Filters = HashMap<String, Vec<String>>;

/// A future that owns what it needs, for the caller to await later.
pub type Later<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// What every router needs besides its own part.
pub trait Backend: Clone + Send + Sync + 'static {
    /// An anonymous scratch file under the data root, for bodies and answers
    /// too big to hold in memory.
    fn scratch_file(&self, what: &str) -> Result<File>;
}

/// `/containers/*` but exec.
pub trait ContainerBackend: Backend {
    fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        f: &Filters,
    ) -> Result<Vec<ContainerSummary>>;
    fn create(
        &self,
        name: Option<&str>,
        req: CreateRequest,
    ) -> impl Future<Output = Result<(String, Vec<String>)>> + Send;
    fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspect>;
    /// Fails with Docker's "No such container" unless `key` names one.
    fn find_container(&self, key: &str) -> Result<()>;
    fn start(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    fn stop(
        &self,
        key: &str,
        timeout: Option<i64>,
        signal: Option<&str>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn restart(&self, key: &str, timeout: Option<i64>) -> impl Future<Output = Result<()>> + Send;
    fn kill(&self, key: &str, signal: &str) -> impl Future<Output = Result<()>> + Send;
    fn pause(&self, key: &str, pause: bool) -> impl Future<Output = Result<()>> + Send;
    fn rename(&self, key: &str, new: &str) -> Result<()>;
    fn resize(&self, key: &str, height: u16, width: u16)
        -> impl Future<Output = Result<()>> + Send;
    fn remove(
        &self,
        key: &str,
        force: bool,
        volumes: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    /// `docker rm --link /parent/alias`.
    fn remove_link(&self, path: &str) -> impl Future<Output = Result<()>> + Send;
    fn prune(&self, f: &Filters) -> impl Future<Output = Result<(Vec<String>, u64)>> + Send;
    /// The exit code once `condition` holds; registered before it returns.
    fn wait(&self, key: &str, condition: &str) -> Result<Later<i64>>;
    fn top(
        &self,
        key: &str,
        ps_args: &str,
    ) -> impl Future<Output = Result<ContainerTopResponse>> + Send;
    fn stats_sample(&self, key: &str, prev: Option<&StatsResponse>) -> Result<StatsResponse>;
    fn update(
        &self,
        key: &str,
        given: HostConfig,
    ) -> impl Future<Output = Result<ContainerUpdateResponse>> + Send;
    fn changes(&self, key: &str) -> Result<Vec<Change>>;
    fn export(&self, key: &str, out: File) -> impl Future<Output = Result<File>> + Send;
    fn archive_stat(&self, key: &str, path: &str) -> impl Future<Output = Result<PathStat>> + Send;
    fn archive_get(
        &self,
        key: &str,
        path: &str,
        out: File,
    ) -> impl Future<Output = Result<(PathStat, File)>> + Send;
    fn archive_put(
        &self,
        key: &str,
        path: &str,
        tar: File,
        no_overwrite_dir_non_dir: bool,
    ) -> impl Future<Output = Result<()>> + Send;
    fn logs(&self, key: &str, opts: LogOptions) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>>;
    fn container_tty(&self, key: &str) -> Result<bool>;
    fn check_attach(&self, key: &str) -> Result<()>;
    /// The attach stream (opened later) and whether the container has a TTY.
    fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(Later<Result<BufReader<UnixStream>>>, bool)>;
}

/// `/containers/{id}/exec` and `/exec/*`.
pub trait ExecBackend: Backend {
    fn exec_create(&self, key: &str, cfg: ExecConfig) -> Result<String>;
    /// A detached start: the exec runs on its own.
    fn exec_start_detached(
        &self,
        exec_id: &str,
        console: Option<(u16, u16)>,
    ) -> impl Future<Output = Result<()>> + Send;
    fn exec_prepare(
        &self,
        exec_id: &str,
        detach: bool,
        console: Option<(u16, u16)>,
    ) -> Result<PreparedExec>;
    fn exec_launch(
        &self,
        p: PreparedExec,
    ) -> impl Future<Output = Result<Option<BufReader<UnixStream>>>> + Send;
    fn exec_finished(&self, exec_id: &str) -> impl Future<Output = ()> + Send;
    fn exec_resize(&self, exec_id: &str, h: u16, w: u16)
        -> impl Future<Output = Result<()>> + Send;
    fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect>;
}

/// `/images/*` and `/commit`.
pub trait ImageBackend: Backend {
    fn images(&self, all: bool, f: &Filters) -> Result<Vec<ImageSummary>>;
    fn image_inspect(&self, name: &str) -> Result<ImageInspect>;
    fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>>;
    fn image_delete(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteItem>>;
    fn find_image(&self, name: &str) -> Result<()>;
    fn image_tag(&self, name: &str, target: &str) -> Result<()>;
    fn image_import(
        &self,
        tar: File,
        opts: ImportOptions,
    ) -> impl Future<Output = Result<String>> + Send;
    fn image_load(&self, tar: File) -> impl Future<Output = Result<LoadReport>> + Send;
    fn image_save(
        &self,
        names: Vec<String>,
        out: File,
    ) -> impl Future<Output = Result<File>> + Send;
    fn prune_images(&self, f: &Filters) -> Result<(Vec<ImageDeleteItem>, u64)>;
    fn commit(&self, key: &str, opts: CommitOptions)
        -> impl Future<Output = Result<String>> + Send;
    fn pull(&self, opts: PullOptions, tx: Sink) -> impl Future<Output = Result<String>> + Send;
    fn push(&self, opts: PushOptions, tx: Sink) -> impl Future<Output = Result<()>> + Send;
    fn distribution_inspect(
        &self,
        name: &str,
        auth: Option<AuthConfig>,
    ) -> impl Future<Output = Result<DistributionInspect>> + Send;
    fn login(&self, creds: AuthConfig) -> impl Future<Output = Result<Option<String>>> + Send;
}

/// `/networks/*`.
pub trait NetworkBackend: Backend {
    fn network_list(&self, f: &Filters) -> Result<Vec<NetworkResource>>;
    fn network_inspect(&self, key: &str) -> Result<NetworkResource>;
    fn network_create(
        &self,
        req: NetworkCreateRequest,
    ) -> impl Future<Output = Result<NetworkCreateResponse>> + Send;
    fn network_remove(&self, key: &str) -> impl Future<Output = Result<()>> + Send;
    fn network_connect(
        &self,
        net: &str,
        container: &str,
        endpoint: &EndpointSettings,
    ) -> impl Future<Output = Result<()>> + Send;
    fn network_disconnect(
        &self,
        net: &str,
        container: &str,
    ) -> impl Future<Output = Result<()>> + Send;
    fn network_prune(&self, f: &Filters) -> Result<Vec<String>>;
}

/// `/volumes/*`.
pub trait VolumeBackend: Backend {
    fn volume_list(&self, f: &Filters) -> Result<VolumeList>;
    fn volume_inspect(&self, name: &str) -> Result<Volume>;
    fn volume_create(&self, req: VolumeCreateRequest) -> Result<Volume>;
    fn volume_remove(&self, name: &str, force: bool) -> Result<()>;
    fn volume_prune(&self, f: &Filters) -> Result<(Vec<String>, u64)>;
}

/// `/build` and `/build/prune`.
pub trait BuildBackend: Backend {
    fn build_context(&self, tar: File) -> impl Future<Output = Result<BuildContext>> + Send;
    /// Runs the build, streaming Docker's messages to `tx`; the context goes
    /// when it is done.
    fn build(
        &self,
        ctx: BuildContext,
        opts: BuildOptions,
        tx: tokio::sync::mpsc::Sender<JsonMessage>,
    ) -> impl Future<Output = Result<String>> + Send;
    fn prune_build_cache(&self) -> Result<(Vec<String>, u64)>;
}

/// `/info`, `/system/df` and `/events`.
pub trait SystemBackend: Backend {
    /// (all, running, paused, stopped)
    fn container_count(&self) -> (usize, usize, usize, usize);
    fn image_count(&self) -> usize;
    fn registry_service_config(&self) -> berth_api::RegistryServiceConfig;
    fn system_df(&self, with_sizes: bool) -> Result<DiskUsage>;
    fn subscribe_events(
        &self,
        since_nano: Option<i64>,
    ) -> (Vec<Event>, tokio::sync::broadcast::Receiver<Event>);
}

/// Every router's part, as the whole API needs.
pub trait Backends:
    ContainerBackend
    + ExecBackend
    + ImageBackend
    + NetworkBackend
    + VolumeBackend
    + BuildBackend
    + SystemBackend
{
}

impl<T> Backends for T where
    T: ContainerBackend
        + ExecBackend
        + ImageBackend
        + NetworkBackend
        + VolumeBackend
        + BuildBackend
        + SystemBackend
{
}

type E = Arc<Engine>;

impl Backend for E {
    fn scratch_file(&self, what: &str) -> Result<File> {
        Engine::scratch_file(self, what)
    }
}

impl ContainerBackend for E {
    fn list(
        &self,
        all: bool,
        limit: Option<usize>,
        size: bool,
        f: &Filters,
    ) -> Result<Vec<ContainerSummary>> {
        Engine::list(self, all, limit, size, f)
    }
    async fn create(
        &self,
        name: Option<&str>,
        req: CreateRequest,
    ) -> Result<(String, Vec<String>)> {
        Engine::create(self, name, req).await
    }
    fn inspect(&self, key: &str, size: bool) -> Result<ContainerInspect> {
        Engine::inspect(self, key, size)
    }
    fn find_container(&self, key: &str) -> Result<()> {
        Engine::find_container(self, key)
    }
    async fn start(&self, key: &str) -> Result<()> {
        Engine::start(self, key).await
    }
    async fn stop(&self, key: &str, timeout: Option<i64>, signal: Option<&str>) -> Result<()> {
        Engine::stop(self, key, timeout, signal).await
    }
    async fn restart(&self, key: &str, timeout: Option<i64>) -> Result<()> {
        Engine::restart(self, key, timeout).await
    }
    async fn kill(&self, key: &str, signal: &str) -> Result<()> {
        Engine::kill(self, key, signal).await
    }
    async fn pause(&self, key: &str, pause: bool) -> Result<()> {
        Engine::pause(self, key, pause).await
    }
    fn rename(&self, key: &str, new: &str) -> Result<()> {
        Engine::rename(self, key, new)
    }
    async fn resize(&self, key: &str, height: u16, width: u16) -> Result<()> {
        Engine::resize(self, key, height, width).await
    }
    async fn remove(&self, key: &str, force: bool, volumes: bool) -> Result<()> {
        Engine::remove(self, key, force, volumes).await
    }
    async fn remove_link(&self, path: &str) -> Result<()> {
        Engine::remove_link(self, path).await
    }
    async fn prune(&self, f: &Filters) -> Result<(Vec<String>, u64)> {
        Engine::prune(self, f).await
    }
    fn wait(&self, key: &str, condition: &str) -> Result<Later<i64>> {
        Ok(Box::pin(Engine::wait(self, key, condition)?))
    }
    async fn top(&self, key: &str, ps_args: &str) -> Result<ContainerTopResponse> {
        Engine::top(self, key, ps_args).await
    }
    fn stats_sample(&self, key: &str, prev: Option<&StatsResponse>) -> Result<StatsResponse> {
        Engine::stats_sample(self, key, prev)
    }
    async fn update(&self, key: &str, given: HostConfig) -> Result<ContainerUpdateResponse> {
        Engine::update(self, key, given).await
    }
    fn changes(&self, key: &str) -> Result<Vec<Change>> {
        Engine::changes(self, key)
    }
    async fn export(&self, key: &str, out: File) -> Result<File> {
        Engine::export(self, key, out).await
    }
    async fn archive_stat(&self, key: &str, path: &str) -> Result<PathStat> {
        Engine::archive_stat(self, key, path).await
    }
    async fn archive_get(&self, key: &str, path: &str, out: File) -> Result<(PathStat, File)> {
        Engine::archive_get(self, key, path, out).await
    }
    async fn archive_put(
        &self,
        key: &str,
        path: &str,
        tar: File,
        no_overwrite: bool,
    ) -> Result<()> {
        Engine::archive_put(self, key, path, tar, no_overwrite).await
    }
    fn logs(&self, key: &str, opts: LogOptions) -> Result<tokio::sync::mpsc::Receiver<Vec<u8>>> {
        Engine::logs(self, key, opts)
    }
    fn container_tty(&self, key: &str) -> Result<bool> {
        Engine::container_tty(self, key)
    }
    fn check_attach(&self, key: &str) -> Result<()> {
        Engine::check_attach(self, key)
    }
    fn attach(
        &self,
        key: &str,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) -> Result<(Later<Result<BufReader<UnixStream>>>, bool)> {
        let (open, tty) = Engine::attach(self, key, stdin, stdout, stderr)?;
        Ok((Box::pin(open), tty))
    }
}

impl ExecBackend for E {
    fn exec_create(&self, key: &str, cfg: ExecConfig) -> Result<String> {
        Engine::exec_create(self, key, cfg)
    }
    async fn exec_start_detached(&self, exec_id: &str, console: Option<(u16, u16)>) -> Result<()> {
        Engine::exec_start(self, exec_id, true, console)
            .await
            .map(|_| ())
    }
    fn exec_prepare(
        &self,
        exec_id: &str,
        detach: bool,
        console: Option<(u16, u16)>,
    ) -> Result<PreparedExec> {
        Engine::exec_prepare(self, exec_id, detach, console)
    }
    async fn exec_launch(&self, p: PreparedExec) -> Result<Option<BufReader<UnixStream>>> {
        Engine::exec_launch(self, p).await
    }
    async fn exec_finished(&self, exec_id: &str) {
        Engine::exec_finished(self, exec_id).await
    }
    async fn exec_resize(&self, exec_id: &str, h: u16, w: u16) -> Result<()> {
        Engine::exec_resize(self, exec_id, h, w).await
    }
    fn exec_inspect(&self, exec_id: &str) -> Result<ExecInspect> {
        Engine::exec_inspect(self, exec_id)
    }
}

impl ImageBackend for E {
    async fn pull(&self, opts: PullOptions, tx: Sink) -> Result<String> {
        Engine::pull(self, opts, tx).await
    }
    async fn push(&self, opts: PushOptions, tx: Sink) -> Result<()> {
        Engine::push(self, opts, tx).await
    }
    async fn distribution_inspect(
        &self,
        name: &str,
        auth: Option<AuthConfig>,
    ) -> Result<DistributionInspect> {
        Engine::distribution_inspect(self, name, auth).await
    }
    async fn login(&self, creds: AuthConfig) -> Result<Option<String>> {
        Engine::login(self, creds).await
    }
    fn images(&self, all: bool, f: &Filters) -> Result<Vec<ImageSummary>> {
        Engine::images(self, all, f)
    }
    fn image_inspect(&self, name: &str) -> Result<ImageInspect> {
        Engine::image_inspect(self, name)
    }
    fn image_history(&self, name: &str) -> Result<Vec<HistoryItem>> {
        Engine::image_history(self, name)
    }
    fn image_delete(&self, name: &str, force: bool) -> Result<Vec<ImageDeleteItem>> {
        Engine::image_delete(self, name, force)
    }
    fn find_image(&self, name: &str) -> Result<()> {
        Engine::find_image(self, name)
    }
    fn image_tag(&self, name: &str, target: &str) -> Result<()> {
        Engine::image_tag(self, name, target)
    }
    async fn image_import(&self, tar: File, opts: ImportOptions) -> Result<String> {
        Engine::image_import(self, tar, opts).await
    }
    async fn image_load(&self, tar: File) -> Result<LoadReport> {
        Engine::image_load(self, tar).await
    }
    async fn image_save(&self, names: Vec<String>, out: File) -> Result<File> {
        Engine::image_save(self, names, out).await
    }
    fn prune_images(&self, f: &Filters) -> Result<(Vec<ImageDeleteItem>, u64)> {
        Engine::prune_images(self, f)
    }
    async fn commit(&self, key: &str, opts: CommitOptions) -> Result<String> {
        Engine::commit(self, key, opts).await
    }
}

impl NetworkBackend for E {
    fn network_list(&self, f: &Filters) -> Result<Vec<NetworkResource>> {
        Engine::network_list(self, f)
    }
    fn network_inspect(&self, key: &str) -> Result<NetworkResource> {
        Engine::network_inspect(self, key)
    }
    async fn network_create(&self, req: NetworkCreateRequest) -> Result<NetworkCreateResponse> {
        let e = self.clone();
        blocking(move || Engine::network_create(&e, req)).await
    }
    async fn network_remove(&self, key: &str) -> Result<()> {
        let (e, key) = (self.clone(), key.to_string());
        blocking(move || Engine::network_remove(&e, &key)).await
    }
    async fn network_connect(
        &self,
        net: &str,
        container: &str,
        endpoint: &EndpointSettings,
    ) -> Result<()> {
        Engine::network_connect(self, net, container, endpoint).await
    }
    async fn network_disconnect(&self, net: &str, container: &str) -> Result<()> {
        Engine::network_disconnect(self, net, container).await
    }
    fn network_prune(&self, f: &Filters) -> Result<Vec<String>> {
        Engine::network_prune(self, f)
    }
}

impl VolumeBackend for E {
    fn volume_list(&self, f: &Filters) -> Result<VolumeList> {
        Engine::volume_list(self, f)
    }
    fn volume_inspect(&self, name: &str) -> Result<Volume> {
        Engine::volume_inspect(self, name)
    }
    fn volume_create(&self, req: VolumeCreateRequest) -> Result<Volume> {
        Engine::volume_create(self, req)
    }
    fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        Engine::volume_remove(self, name, force)
    }
    fn volume_prune(&self, f: &Filters) -> Result<(Vec<String>, u64)> {
        Engine::volume_prune(self, f)
    }
}

impl BuildBackend for E {
    async fn build_context(&self, tar: File) -> Result<BuildContext> {
        Engine::build_context(self, tar).await
    }
    async fn build(
        &self,
        ctx: BuildContext,
        opts: BuildOptions,
        tx: tokio::sync::mpsc::Sender<JsonMessage>,
    ) -> Result<String> {
        let res = Engine::build(self, ctx.path(), opts, tx).await;
        // Removing a large context takes a while: not on the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || drop(ctx)).await;
        res
    }
    fn prune_build_cache(&self) -> Result<(Vec<String>, u64)> {
        Engine::prune_build_cache(self)
    }
}

impl SystemBackend for E {
    fn registry_service_config(&self) -> berth_api::RegistryServiceConfig {
        Engine::registry_service_config(self)
    }
    fn container_count(&self) -> (usize, usize, usize, usize) {
        Engine::container_count(self)
    }
    fn image_count(&self) -> usize {
        Engine::image_count(self)
    }
    fn system_df(&self, with_sizes: bool) -> Result<DiskUsage> {
        Engine::system_df(self, with_sizes)
    }
    fn subscribe_events(
        &self,
        since_nano: Option<i64>,
    ) -> (Vec<Event>, tokio::sync::broadcast::Receiver<Event>) {
        Engine::subscribe_events(self, since_nano)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::EngineError::Internal(e.to_string()))?
}
