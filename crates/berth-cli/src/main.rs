//! berth: the command-line client, with Docker's command grammar. The
//! grammar is in `args/`; each object kind's commands are in the module of
//! its name (`container/`, `image`, `network`, `volume`, `system`, `build`),
//! over the shared `client`, `format`, `stream` and `util`.

mod args;
mod build;
mod client;
mod container;
mod distribution;
mod format;
mod gotmpl;
mod image;
mod network;
mod registry;
mod stream;
mod system;
mod util;
mod volume;

use anyhow::Result;
use args::*;
use clap::Parser;
use client::Client;
use util::ExitWith;

/// Building clap's whole command tree costs ~0.6 ms of every start of the
/// CLI. The commands on a container's everyday path parse against their own
/// arguments only; anything else, and any error or help request, takes the
/// full parse, so what users see is the same.
fn quick_parse() -> Option<Cli> {
    use clap::{Args, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let (host, at) = match args.get(1)?.to_str()? {
        "-H" | "--host" => (Some(args.get(2)?.to_str()?.to_string()), 3),
        a if a.starts_with("--host=") => (Some(a["--host=".len()..].to_string()), 2),
        a if a.starts_with('-') => return None,
        _ => (None, 1),
    };
    let name = args.get(at)?.to_str()?;
    macro_rules! quick {
        ($($name:literal => $variant:ident($args:ty)),* $(,)?) => {
            match name {
                $($name => {
                    let m = <$args>::augment_args(clap::Command::new($name))
                        .try_get_matches_from(&args[at..])
                        .ok()?;
                    ShortCmd::$variant(<$args>::from_arg_matches(&m).ok()?)
                })*
                _ => return None,
            }
        };
    }
    let cmd = quick! {
        "run" => Run(RunArgs),
        "create" => Create(RunArgs),
        "start" => Start(StartArgs),
        "exec" => Exec(ExecArgs),
        "ps" => Ps(PsArgs),
        "rm" => Rm(RmArgs),
        "stop" => Stop(StopArgs),
        "logs" => Logs(LogsArgs),
        "inspect" => Inspect(InspectArgs),
        "kill" => Kill(KillArgs),
        "restart" => Restart(StopArgs),
        "wait" => Wait(NamesArgs),
        "attach" => Attach(AttachArgs),
        "top" => Top(TopArgs),
        "pause" => Pause(NamesArgs),
        "unpause" => Unpause(NamesArgs),
        "images" => Images(ImagesArgs),
        "version" => Version(FormatArgs),
    };
    Some(Cli {
        host,
        cmd: Cmd::Short(cmd),
    })
}

pub fn dispatch(c: &Client, cmd: Cmd) -> i32 {
    let (res, fail_code) = match cmd {
        Cmd::Container { cmd } => container::dispatch(c, cmd),
        Cmd::Image { cmd } => image::dispatch(c, cmd),
        Cmd::Volume { cmd } => (volume::dispatch(c, cmd), 1),
        Cmd::Network { cmd } => (network::dispatch(c, cmd), 1),
        Cmd::Registry { cmd } => (registry::dispatch(cmd), 1),
        Cmd::System { cmd } => match cmd {
            SystemCmd::Df(a) => (system::df(c, a), 1),
            SystemCmd::Prune(a) => (system::system_prune(c, a), 1),
            SystemCmd::Info(a) => (system::info(c, a), 1),
        },
        Cmd::Short(s) => short(c, s),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}", util::error_text(&e));
            e.downcast_ref::<ExitWith>().map_or(fail_code, |x| x.0)
        }
    }
}

fn short(c: &Client, cmd: ShortCmd) -> (Result<i32>, i32) {
    use ShortCmd as S;
    match cmd {
        S::Run(a) => container::dispatch(c, ContainerCmd::Run(a)),
        S::Create(a) => container::dispatch(c, ContainerCmd::Create(a)),
        S::Start(a) => container::dispatch(c, ContainerCmd::Start(a)),
        S::Ps(a) => container::dispatch(c, ContainerCmd::Ls(a)),
        S::Logs(a) => container::dispatch(c, ContainerCmd::Logs(a)),
        S::Inspect(a) => (system::inspect(c, a, None), 1),
        S::Top(a) => container::dispatch(c, ContainerCmd::Top(a)),
        S::Stop(a) => container::dispatch(c, ContainerCmd::Stop(a)),
        S::Kill(a) => container::dispatch(c, ContainerCmd::Kill(a)),
        S::Restart(a) => container::dispatch(c, ContainerCmd::Restart(a)),
        S::Rm(a) => container::dispatch(c, ContainerCmd::Rm(a)),
        S::Wait(a) => container::dispatch(c, ContainerCmd::Wait(a)),
        S::Attach(a) => container::dispatch(c, ContainerCmd::Attach(a)),
        S::Exec(a) => container::dispatch(c, ContainerCmd::Exec(a)),
        S::Rename(a) => container::dispatch(c, ContainerCmd::Rename(a)),
        S::Port(a) => container::dispatch(c, ContainerCmd::Port(a)),
        S::Commit(a) => container::dispatch(c, ContainerCmd::Commit(a)),
        S::Build(a) => image::dispatch(c, ImageCmd::Build(a)),
        S::Diff(a) => container::dispatch(c, ContainerCmd::Diff(a)),
        S::Export(a) => container::dispatch(c, ContainerCmd::Export(a)),
        S::Update(a) => container::dispatch(c, ContainerCmd::Update(a)),
        S::Cp(a) => container::dispatch(c, ContainerCmd::Cp(a)),
        S::Stats(a) => container::dispatch(c, ContainerCmd::Stats(a)),
        S::Pause(a) => container::dispatch(c, ContainerCmd::Pause(a)),
        S::Unpause(a) => container::dispatch(c, ContainerCmd::Unpause(a)),
        S::Images(a) => image::dispatch(c, ImageCmd::Ls(a)),
        S::Import(a) => image::dispatch(c, ImageCmd::Import(a)),
        S::Load(a) => image::dispatch(c, ImageCmd::Load(a)),
        S::Pull(a) => image::dispatch(c, ImageCmd::Pull(a)),
        S::Push(a) => image::dispatch(c, ImageCmd::Push(a)),
        S::Login(a) => (distribution::login(c, a), 1),
        S::Logout(a) => (distribution::logout(a), 1),
        S::Save(a) => image::dispatch(c, ImageCmd::Save(a)),
        S::Tag(a) => image::dispatch(c, ImageCmd::Tag(a)),
        S::Rmi(a) => image::dispatch(c, ImageCmd::Rm(a)),
        S::Version(a) => (system::version(c, a), 1),
        S::Events(a) => (system::events(c, a), 1),
        S::Info(a) => (system::info(c, a), 1),
    }
}

fn main() {
    let cli = quick_parse().unwrap_or_else(Cli::parse);
    let host = cli
        .host
        .clone()
        .or_else(|| std::env::var("BERTH_HOST").ok().filter(|s| !s.is_empty()))
        .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unix:///run/berth/berth.sock".into());
    let c = client::Client::new(&host);
    let code = dispatch(&c, cli.cmd);
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_parses_match_the_full_parse() {
        use clap::Parser;
        // `quick_parse` reads the process's arguments; check the pieces it
        // builds on parse exactly as the full tree does.
        use clap::{Args, FromArgMatches};
        let argv = [
            "run",
            "--rm",
            "-it",
            "-e",
            "A=1",
            "--network",
            "none",
            "busybox",
            "sh",
            "-c",
            "x y",
        ];
        let m = RunArgs::augment_args(clap::Command::new("run"))
            .try_get_matches_from(argv)
            .unwrap();
        let quick = RunArgs::from_arg_matches(&m).unwrap();
        let full = Cli::try_parse_from(std::iter::once("berth").chain(argv)).unwrap();
        let Cmd::Short(ShortCmd::Run(full)) = full.cmd else {
            panic!("not a run")
        };
        let view = |a: &RunArgs| {
            (
                a.rm,
                a.interactive,
                a.tty,
                a.env.clone(),
                a.network.clone(),
                a.image_and_cmd.clone(),
            )
        };
        assert_eq!(view(&quick), view(&full));
        assert_eq!(view(&quick).5, ["busybox", "sh", "-c", "x y"]);
    }

    #[test]
    fn the_command_tree_is_consistent() {
        // clap checks flag clashes (e.g. `-H` for host and for `history --human`)
        // only when a subcommand is parsed; check the whole tree at once.
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
