//! `connectors credential-provider`: a kubelet image credential provider (credentialprovider.kubelet.k8s.io/v1)
//! that answers with the pod's own ServiceAccount token as the password for the proxy, so that pods whose images
//! the webhook points at the proxy need no imagePullSecret and no long-lived token is stored anywhere.
//!
//! The kubelet runs it once per image pull (when the image matches `matchImages` of its
//! CredentialProviderConfig), writes a CredentialProviderRequest to stdin — with `serviceAccountToken`, a token
//! of the pod's ServiceAccount for the audience in `tokenAttributes` — and reads a CredentialProviderResponse
//! from stdout. See docs/kubernetes.md, "The kubelet pulls with the pod's identity".

use std::io::{Read as _, Write as _};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// A request is a few kilobytes; anything larger is not the kubelet.
const MAX_REQUEST: u64 = 1 << 20;

#[derive(Args)]
pub(crate) struct CredentialProviderArgs {
    /// The user name sent with the token (the proxy reads only the password).
    #[arg(long, default_value = "connectors")]
    username: String,
    /// How long the kubelet may reuse the answer. Keep it below the token's life; 0s asks every pull.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    cache_duration: std::time::Duration,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    api_version: Option<String>,
    kind: Option<String>,
    image: String,
    #[serde(default)]
    service_account_token: Option<String>,
}

pub(crate) fn credential_provider(args: CredentialProviderArgs) -> Result<ExitCode> {
    let mut input = String::new();
    std::io::stdin()
        .take(MAX_REQUEST)
        .read_to_string(&mut input)
        .context("reading the CredentialProviderRequest from stdin")?;
    let response = answer(&args, &input)?;
    let mut out = std::io::stdout().lock();
    out.write_all(response.as_bytes())
        .and_then(|()| out.flush())
        .context("writing the CredentialProviderResponse")?;
    Ok(ExitCode::SUCCESS)
}

/// The response for a request; errors never contain the token.
fn answer(args: &CredentialProviderArgs, input: &str) -> Result<String> {
    let request: Request = serde_json::from_str(input).map_err(|e| {
        anyhow::anyhow!(
            "stdin is not a CredentialProviderRequest ({e}); this command is run by the kubelet (see docs/kubernetes.md)"
        )
    })?;
    if request
        .kind
        .as_deref()
        .is_some_and(|k| k != "CredentialProviderRequest")
    {
        bail!("expected kind CredentialProviderRequest");
    }
    if let Some(v) = request.api_version.as_deref().filter(|v| *v != API_VERSION) {
        bail!(
            "apiVersion {v:?} is not supported; set apiVersion: {API_VERSION} in the CredentialProviderConfig"
        );
    }
    let Some(token) = request.service_account_token.filter(|t| !t.is_empty()) else {
        bail!(
            "the kubelet passed no service account token: set tokenAttributes.serviceAccountTokenAudience (connectors-proxy) in the CredentialProviderConfig"
        );
    };
    let (registry, _) = connectors_controller::webhook::image_registry(&request.image)
        .with_context(|| format!("image {:?} names no registry host", request.image))?;
    let response = json!({
        "kind": "CredentialProviderResponse",
        "apiVersion": API_VERSION,
        "cacheKeyType": "Image",
        "cacheDuration": humantime::format_duration(args.cache_duration).to_string(),
        "auth": {registry: {"username": args.username, "password": token}},
    });
    Ok(response.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> CredentialProviderArgs {
        CredentialProviderArgs {
            username: "connectors".into(),
            cache_duration: std::time::Duration::ZERO,
        }
    }

    #[test]
    fn answers_with_the_pod_token_for_the_image_registry() {
        let out = answer(
            &args(),
            r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"10.250.0.1:30080/namespaces/a/connectors/r/app:v1","serviceAccountToken":"tok.en.sig"}"#,
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["kind"], "CredentialProviderResponse");
        assert_eq!(v["auth"]["10.250.0.1:30080"]["password"], "tok.en.sig");
        assert_eq!(v["auth"]["10.250.0.1:30080"]["username"], "connectors");
    }

    #[test]
    fn refuses_without_a_token_and_never_echoes_input() {
        let err = answer(&args(), r#"{"image":"proxy.example/x/y:v1"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("tokenAttributes"), "{err:#}");
        let err = answer(&args(), "not json secret-ish").unwrap_err();
        assert!(!format!("{err:#}").contains("secret-ish"), "{err:#}");
        let err = answer(&args(), r#"{"image":"app:v1","serviceAccountToken":"t"}"#).unwrap_err();
        assert!(format!("{err:#}").contains("names no registry host"));
    }
}
