//! Docker-style generated names: `adjective_surname`.

const LEFT: &[&str] = &[
    "admiring",
    "brave",
    "clever",
    "dazzling",
    "eager",
    "focused",
    "gallant",
    "happy",
    "jolly",
    "keen",
    "laughing",
    "modest",
    "nifty",
    "optimistic",
    "peaceful",
    "quirky",
    "relaxed",
    "serene",
    "tender",
    "upbeat",
    "vigilant",
    "wizardly",
    "youthful",
    "zealous",
];
const RIGHT: &[&str] = &[
    "albattani",
    "babbage",
    "curie",
    "darwin",
    "euclid",
    "feynman",
    "goldberg",
    "hopper",
    "hypatia",
    "johnson",
    "kepler",
    "lovelace",
    "mayer",
    "noether",
    "pascal",
    "ritchie",
    "shannon",
    "thompson",
    "turing",
    "villani",
    "wozniak",
    "yonath",
    "zhukovsky",
    "lamport",
];

pub fn generate(attempt: u32) -> String {
    let l = LEFT[rand::random::<usize>() % LEFT.len()];
    let r = RIGHT[rand::random::<usize>() % RIGHT.len()];
    if attempt == 0 {
        format!("{l}_{r}")
    } else {
        format!("{l}_{r}{}", rand::random::<u8>() % 10)
    }
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid(name: &str) -> bool {
    let b = name.as_bytes();
    b.len() >= 2
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
}
