//! Whether a container image's runtime base provides every shared library its binary needs:
//! the runtime stage of the Dockerfile (its last `FROM`) against the binary's `ldd` output.

use std::path::Path;
use std::process::Command;

/// The Debian packages of the runtime bases the images may use, and the shared libraries
/// (sonames) each package installs that a Rust binary can link.
const BASES: &[(&str, &[&str])] = &[
    // distroless/cc: glibc, OpenSSL 3 and the C/C++ runtimes (libc6, libssl3, libgcc-s1,
    // libstdc++6); no libz.
    ("gcr.io/distroless/cc-debian12", &["libc6", "libssl3", "libgcc-s1", "libstdc++6"]),
    // distroless/static: no shared library at all.
    ("gcr.io/distroless/static-debian12", &[]),
];

const PACKAGES: &[(&str, &[&str])] = &[
    (
        "libc6",
        &[
            "libc.so.6",
            "libm.so.6",
            "libdl.so.2",
            "libpthread.so.0",
            "librt.so.1",
            "libutil.so.1",
            "libresolv.so.2",
            "ld-linux-x86-64.so.2",
            "ld-linux-aarch64.so.1",
        ],
    ),
    ("libssl3", &["libssl.so.3", "libcrypto.so.3"]),
    ("libgcc-s1", &["libgcc_s.so.1"]),
    ("libstdc++6", &["libstdc++.so.6"]),
];

/// The runtime base image of a Dockerfile: the image of its last `FROM`, without tag or
/// digest.
pub fn runtime_base(dockerfile: &str) -> Option<String> {
    let image = dockerfile
        .lines()
        .map(str::trim)
        .rfind(|l| l.to_ascii_uppercase().starts_with("FROM "))?
        .split_whitespace()
        .nth(1)?;
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let name = match image.rfind(':') {
        Some(colon) if image.rfind('/').is_none_or(|slash| colon > slash) => &image[..colon],
        _ => image,
    };
    Some(name.to_string())
}

/// The sonames in `ldd` output (the kernel's vDSO left out).
pub fn linked_libraries(ldd_output: &str) -> Vec<String> {
    ldd_output
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|first| !first.ends_with(':') && !first.starts_with("linux-vdso") && *first != "statically")
        .map(|path| path.rsplit('/').next().unwrap_or(path).to_string())
        .collect()
}

/// The libraries `binary` links that the runtime base of `dockerfile` does not provide, or
/// why it cannot be told (an unknown base, no ldd).
pub fn libraries_missing_from_runtime(dockerfile: &Path, binary: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(dockerfile).map_err(|e| format!("{}: {e}", dockerfile.display()))?;
    let base = runtime_base(&text).ok_or_else(|| format!("{}: no FROM line", dockerfile.display()))?;
    let packages = BASES
        .iter()
        .find(|(name, _)| *name == base)
        .map(|(_, packages)| *packages)
        .ok_or_else(|| format!("{}: runtime base {base} is not one this check knows", dockerfile.display()))?;
    let provided: Vec<&str> = PACKAGES
        .iter()
        .filter(|(package, _)| packages.contains(package))
        .flat_map(|(_, sonames)| sonames.iter().copied())
        .collect();
    let output = Command::new("ldd").arg(binary).output().map_err(|e| format!("cannot run ldd: {e}"))?;
    let linked = linked_libraries(&String::from_utf8_lossy(&output.stdout));
    if linked.is_empty() {
        return Err(format!("ldd listed no library for {}", binary.display()));
    }
    Ok(linked.into_iter().filter(|l| !provided.contains(&l.as_str())).collect())
}

/// Panics unless the image `dockerfile` builds would start `binary` (named `name`, as the
/// Dockerfile's `strip` names it): a non-root user, a stripped binary, and a runtime base
/// with every library the binary links.
pub fn assert_image_runs(dockerfile: &Path, binary: &Path, name: &str) {
    let text = std::fs::read_to_string(dockerfile).unwrap_or_else(|e| panic!("{}: {e}", dockerfile.display()));
    assert!(text.contains("USER 65532:65532"), "{}: the image must run as non-root", dockerfile.display());
    assert!(
        text.contains(&format!("strip target/release/{name}")),
        "{}: {name} must be stripped",
        dockerfile.display()
    );
    let missing = libraries_missing_from_runtime(dockerfile, binary).unwrap_or_else(|e| panic!("{e}"));
    assert!(missing.is_empty(), "{}: the runtime base lacks {missing:?}, which {name} links", dockerfile.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_base_is_the_last_from() {
        let file = "FROM rust:1.95-bookworm AS build\nRUN x\nfrom gcr.io/distroless/cc-debian12:nonroot\nUSER 1\n";
        assert_eq!(runtime_base(file).as_deref(), Some("gcr.io/distroless/cc-debian12"));
        assert_eq!(runtime_base("FROM registry:5000/base@sha256:00").as_deref(), Some("registry:5000/base"));
    }

    #[test]
    fn ldd_lines_give_sonames() {
        let out = "\tlinux-vdso.so.1 (0x1)\n\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x2)\n\t/lib64/ld-linux-x86-64.so.2 (0x3)\n";
        assert_eq!(linked_libraries(out), ["libz.so.1", "ld-linux-x86-64.so.2"]);
    }
}
