//! `weftd policy new`: writes a policy project (Rust, Python or JavaScript)
//! from the templates in `host/templates/policy-new/`, compiled into the
//! binary.
//!
//! Templates hold `{{key}}` placeholders; [`Project::render`] fills every
//! one and refuses to write a file with one left over.

use anyhow::Context;
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use weft_policy_sdk::{CONTRACT, CONTRACT_WIT};

/// Arguments of `weftd policy new`.
#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The project's name (lowercase letters, digits and dashes); also the
    /// directory created, unless `--dir` is given.
    name: String,
    /// The decision the policy makes.
    #[arg(long, value_enum)]
    world: World,
    /// The language to write it in.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The directory to create (default: `./NAME`). It must not exist.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Depend on the SDK at this path (a checkout's `policies/sdk`, or an
    /// extracted package) instead of the published crate. Rust only.
    #[arg(long)]
    sdk_path: Option<PathBuf>,
}

/// The WIT world, one per decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum World {
    /// How the warm pool grows and shrinks.
    PoolSizing,
    /// Which subnet a new ENI goes to.
    SubnetSelection,
    /// Which security groups a pod gets.
    SecurityGroups,
}

/// The language of the generated project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// Rust with `weft-policy-sdk`: native tests, small fast components.
    Rust,
    /// Python with componentize-py.
    Python,
    /// JavaScript with ComponentizeJS.
    Js,
}

/// `include_str!` of a file under `host/templates/policy-new/`.
macro_rules! template {
    ($path:literal) => {
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/templates/policy-new/",
            $path
        ))
    };
}

impl World {
    fn name(self) -> &'static str {
        match self {
            World::PoolSizing => "pool-sizing",
            World::SubnetSelection => "subnet-selection",
            World::SecurityGroups => "security-groups",
        }
    }

    /// The one fixture every project starts with.
    fn fixture(self) -> &'static str {
        match self {
            World::PoolSizing => template!("fixtures/pool-sizing.json"),
            World::SubnetSelection => template!("fixtures/subnet-selection.json"),
            World::SecurityGroups => template!("fixtures/security-groups.json"),
        }
    }

    /// The SDK's fixture checker for this world.
    fn check_fn(self) -> &'static str {
        match self {
            World::PoolSizing => "check_pool_fixtures",
            World::SubnetSelection => "check_subnet_fixtures",
            World::SecurityGroups => "check_security_fixtures",
        }
    }
}

impl Lang {
    /// The project's files: path in the project and template text.
    fn files(self, world: World) -> Vec<(&'static str, &'static str)> {
        let fixture = ("fixtures/example.json", world.fixture());
        match self {
            Lang::Rust => vec![
                ("Cargo.toml", template!("rust/Cargo.toml")),
                ("README.md", template!("rust/README.md")),
                (".gitignore", template!("rust/gitignore")),
                ("tests/fixtures.rs", template!("rust/fixtures.rs")),
                (
                    "src/lib.rs",
                    match world {
                        World::PoolSizing => template!("rust/pool-sizing.rs"),
                        World::SubnetSelection => template!("rust/subnet-selection.rs"),
                        World::SecurityGroups => template!("rust/security-groups.rs"),
                    },
                ),
                fixture,
            ],
            Lang::Python => vec![
                ("README.md", template!("python/README.md")),
                (".gitignore", template!("python/gitignore")),
                ("wit/policy.wit", CONTRACT_WIT),
                (
                    "app.py",
                    match world {
                        World::PoolSizing => template!("python/pool-sizing.py"),
                        World::SubnetSelection => template!("python/subnet-selection.py"),
                        World::SecurityGroups => template!("python/security-groups.py"),
                    },
                ),
                fixture,
            ],
            Lang::Js => vec![
                ("README.md", template!("js/README.md")),
                (".gitignore", template!("js/gitignore")),
                ("package.json", template!("js/package.json")),
                ("wit/policy.wit", CONTRACT_WIT),
                (
                    "policy.js",
                    match world {
                        World::PoolSizing => template!("js/pool-sizing.js"),
                        World::SubnetSelection => template!("js/subnet-selection.js"),
                        World::SecurityGroups => template!("js/security-groups.js"),
                    },
                ),
                fixture,
            ],
        }
    }
}

/// A project about to be written: its placeholders' values.
struct Project {
    values: Vec<(&'static str, String)>,
}

impl Project {
    fn new(args: &NewArgs) -> anyhow::Result<Self> {
        check_name(&args.name)?;
        let sdk = match (&args.sdk_path, args.lang) {
            (None, _) => {
                let version = env!("CARGO_PKG_VERSION");
                let major_minor = version.rsplit_once('.').map_or(version, |(mm, _)| mm);
                format!("version = \"{major_minor}\"")
            }
            (Some(path), Lang::Rust) => {
                let manifest = std::fs::read_to_string(path.join("Cargo.toml"))
                    .with_context(|| format!("--sdk-path {}", path.display()))?;
                if !manifest.contains("name = \"weft-policy-sdk\"") {
                    return Err(anyhow::anyhow!(
                        "--sdk-path {}: not the weft-policy-sdk crate",
                        path.display()
                    ));
                }
                let path = std::path::absolute(path)
                    .with_context(|| format!("--sdk-path {}", path.display()))?;
                format!("path = {}", toml::Value::String(path.display().to_string()))
            }
            (Some(_), lang) => {
                return Err(anyhow::anyhow!(
                    "--sdk-path is for Rust projects; {lang:?} projects carry the contract in wit/"
                ));
            }
        };
        let fixture: serde_json::Value = serde_json::from_str(args.world.fixture())
            .context("the built-in fixture is not JSON")?;
        let settings = toml::Value::try_from(&fixture["settings"])
            .context("the built-in fixture's settings are not TOML")?;
        let crate_name = args.name.replace('-', "_");
        let type_name: String = args
            .name
            .split('-')
            .flat_map(|word| {
                let mut chars = word.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase())
                    .into_iter()
                    .chain(chars)
            })
            .collect();
        let wasm = match args.lang {
            Lang::Rust => format!("target/wasm32-wasip2/release/{crate_name}.wasm"),
            Lang::Python | Lang::Js => format!("{crate_name}.wasm"),
        };
        let mut project = Project {
            values: vec![
                ("name", args.name.clone()),
                ("crate", crate_name),
                ("type", type_name),
                ("world", args.world.name().to_owned()),
                ("contract", CONTRACT.to_owned()),
                ("check_fn", args.world.check_fn().to_owned()),
                ("sdk", sdk),
                ("settings", settings.to_string()),
                ("wasm", wasm),
            ],
        };
        // Sections every README shares, themselves templates.
        let check = project.render("common/check.md", template!("common/check.md"))?;
        let deploy = project.render("common/deploy.md", template!("common/deploy.md"))?;
        project.values.push(("check", check));
        project.values.push(("deploy", deploy));
        Ok(project)
    }

    /// `template` with every placeholder filled.
    fn render(&self, path: &str, template: &str) -> anyhow::Result<String> {
        let mut text = template.to_owned();
        for (key, value) in &self.values {
            text = text.replace(&format!("{{{{{key}}}}}"), value);
        }
        match text.find("{{") {
            Some(at) => Err(anyhow::anyhow!(
                "template {path} has an unknown placeholder at byte {at}"
            )),
            None => Ok(text),
        }
    }
}

/// A name usable as a crate, package and directory name.
fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(anyhow::anyhow!(
            "{name:?} is not a policy name: use lowercase letters, digits and single dashes, \
             starting with a letter (at most 64 characters), e.g. `my-sg-policy`"
        ))
    }
}

/// Writes the project; prints what to do next.
pub(crate) fn run(args: &NewArgs) -> anyhow::Result<()> {
    let project = Project::new(args)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    let files = args
        .lang
        .files(args.world)
        .into_iter()
        .map(|(path, template)| Ok((path, project.render(path, template)?)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if dir.exists() {
        return Err(anyhow::anyhow!(
            "{} already exists; choose another name or --dir",
            dir.display()
        ));
    }
    if let Err(e) = write_all(&dir, &files) {
        // Only what this command created is removed.
        let _ = std::fs::remove_dir_all(&dir);
        return Err(e);
    }
    println!(
        "wrote a {} policy in {} to {}:",
        args.world.name(),
        match args.lang {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        },
        dir.display()
    );
    for (path, _) in &files {
        println!("  {path}");
    }
    println!("its README.md says how to build, test, check, evaluate and deploy it");
    Ok(())
}

fn write_all(dir: &Path, files: &[(&str, String)]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, world: World, lang: Lang) -> NewArgs {
        NewArgs {
            name: name.into(),
            world,
            lang,
            dir: None,
            sdk_path: None,
        }
    }

    const WORLDS: [World; 3] = [
        World::PoolSizing,
        World::SubnetSelection,
        World::SecurityGroups,
    ];
    const LANGS: [Lang; 3] = [Lang::Rust, Lang::Python, Lang::Js];

    #[test]
    fn every_template_renders_without_leftover_placeholders() {
        for world in WORLDS {
            for lang in LANGS {
                let project = Project::new(&args("my-policy", world, lang)).expect("project");
                for (path, template) in lang.files(world) {
                    let text = project.render(path, template).expect(path);
                    assert!(!text.contains("{{"), "{world:?} {lang:?} {path}");
                }
            }
        }
    }

    #[test]
    fn names_become_crate_and_type_names() {
        let project =
            Project::new(&args("my-sg-2", World::SecurityGroups, Lang::Rust)).expect("project");
        let text = project
            .render("t", "{{crate}} {{type}} {{world}} {{sdk}}")
            .expect("render");
        assert_eq!(text, "my_sg_2 MySg2 security-groups version = \"0.1\"");
    }

    #[test]
    fn bad_names_and_unknown_placeholders_are_refused() {
        for bad in ["", "My", "1x", "a_b", "a-", "a--b", "../x"] {
            let err = Project::new(&args(bad, World::PoolSizing, Lang::Rust))
                .err()
                .unwrap_or_else(|| panic!("{bad:?} accepted"));
            assert!(err.to_string().contains("not a policy name"), "{err}");
        }
        let project = Project::new(&args("p", World::PoolSizing, Lang::Rust)).expect("project");
        let err = project.render("x.rs", "{{nope}}").expect_err("unknown");
        assert!(err.to_string().contains("x.rs"), "{err}");
    }

    #[test]
    fn settings_of_the_fixture_are_shown_as_toml() {
        let project = Project::new(&args("p", World::PoolSizing, Lang::Rust)).expect("project");
        let text = project.render("t", "{{settings}}").expect("render");
        assert_eq!(text, "{ spare = 3 }");
    }
}
