//! `litellm_params.model` → provider, the model name sent upstream, and whether the
//! deployment is a chat model at all.

use switchyard_api::Protocol;

/// An OpenAI-compatible API LiteLLM knows by a provider prefix: served as `protocol: openai`
/// at its documented base URL, with LiteLLM's variables for the base and the key.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Compatible {
    pub prefixes: &'static [&'static str],
    pub base_env: &'static [&'static str],
    pub default_base: Option<&'static str>,
    /// LiteLLM's key variable; `None` for local servers that take no key.
    pub key_env: Option<&'static str>,
    /// The server's OpenAI API lives under `/v1` of the host LiteLLM is given (Ollama).
    pub under_v1: bool,
}

const COMPATIBLE: &[Compatible] = &[
    Compatible {
        prefixes: &["groq"],
        base_env: &["GROQ_API_BASE"],
        default_base: Some("https://api.groq.com/openai/v1"),
        key_env: Some("GROQ_API_KEY"),
        under_v1: false,
    },
    Compatible {
        prefixes: &["openrouter"],
        base_env: &["OPENROUTER_API_BASE"],
        default_base: Some("https://openrouter.ai/api/v1"),
        key_env: Some("OPENROUTER_API_KEY"),
        under_v1: false,
    },
    Compatible {
        prefixes: &["deepseek"],
        base_env: &["DEEPSEEK_API_BASE"],
        default_base: Some("https://api.deepseek.com/v1"),
        key_env: Some("DEEPSEEK_API_KEY"),
        under_v1: false,
    },
    Compatible {
        prefixes: &["xai"],
        base_env: &["XAI_API_BASE"],
        default_base: Some("https://api.x.ai/v1"),
        key_env: Some("XAI_API_KEY"),
        under_v1: false,
    },
    Compatible {
        prefixes: &["cerebras"],
        base_env: &["CEREBRAS_API_BASE"],
        default_base: Some("https://api.cerebras.ai/v1"),
        key_env: Some("CEREBRAS_API_KEY"),
        under_v1: false,
    },
    Compatible {
        prefixes: &["ollama", "ollama_chat"],
        base_env: &["OLLAMA_API_BASE"],
        default_base: Some("http://localhost:11434"),
        key_env: None,
        under_v1: true,
    },
    Compatible {
        prefixes: &["lm_studio"],
        base_env: &["LM_STUDIO_API_BASE"],
        default_base: None,
        key_env: None,
        under_v1: false,
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Provider {
    Openai,
    HostedVllm,
    Anthropic,
    /// One of [`COMPATIBLE`], with the prefix the config used.
    Compatible(&'static Compatible, &'static str),
}

impl Provider {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::Openai),
            "hosted_vllm" => Some(Self::HostedVllm),
            "anthropic" => Some(Self::Anthropic),
            _ => COMPATIBLE.iter().find_map(|c| {
                let prefix = c.prefixes.iter().find(|p| **p == name)?;
                Some(Self::Compatible(c, prefix))
            }),
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::HostedVllm => "hosted_vllm",
            Self::Anthropic => "anthropic",
            Self::Compatible(_, prefix) => prefix,
        }
    }

    pub(super) fn protocol(self) -> Protocol {
        match self {
            Self::Anthropic => Protocol::Anthropic,
            _ => Protocol::Openai,
        }
    }

    /// LiteLLM's variables for the base URL when `api_base` is absent, and its default base.
    pub(super) fn default_base(self) -> (&'static [&'static str], Option<&'static str>) {
        match self {
            Self::Openai => (
                &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
                Some("https://api.openai.com/v1"),
            ),
            Self::Anthropic => (
                &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
                Some("https://api.anthropic.com"),
            ),
            Self::HostedVllm => (&["HOSTED_VLLM_API_BASE"], None),
            Self::Compatible(c, _) => (c.base_env, c.default_base),
        }
    }

    /// LiteLLM's key variable for a deployment without `api_key`.
    pub(super) fn default_key_env(self, has_base: bool) -> Option<&'static str> {
        match self {
            Self::Anthropic => Some("ANTHROPIC_API_KEY"),
            Self::Openai if !has_base => Some("OPENAI_API_KEY"),
            Self::Openai | Self::HostedVllm => None,
            Self::Compatible(c, _) => c.key_env,
        }
    }

    /// LiteLLM appends the API path to a host for these: Switchyard's base ends in `/v1`.
    pub(super) fn under_v1(self) -> bool {
        match self {
            Self::Anthropic => true,
            Self::Compatible(c, _) => c.under_v1,
            _ => false,
        }
    }
}

const SUPPORTED: &str = "Switchyard serves OpenAI-compatible APIs (`openai/`, `hosted_vllm/`, \
                         `groq/`, `openrouter/`, `deepseek/`, `xai/`, `cerebras/`, `ollama/`, \
                         `lm_studio/`) and the Anthropic API (`anthropic/`)";

/// Provider, the model name sent upstream, and whether the provider was inferred.
///
/// Errors name the field at fault (`model` or `custom_llm_provider`) and why.
pub(super) fn parse_model(
    model: &str,
    custom: Option<&str>,
) -> Result<(Provider, String, bool), (&'static str, String)> {
    let model = model.trim();
    let (provider, rest, inferred) = if let Some(custom) = custom {
        let provider = Provider::from_name(custom).ok_or_else(|| {
            let message = format!("`{custom}` is not supported: {SUPPORTED}");
            ("custom_llm_provider", message)
        })?;
        let rest = model
            .strip_prefix(custom)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(model);
        (provider, rest, false)
    } else if let Some((prefix, rest)) = model.split_once('/') {
        let provider =
            Provider::from_name(prefix).ok_or_else(|| ("model", unknown_prefix(prefix, rest)))?;
        (provider, rest, false)
    } else {
        (infer(model).map_err(|m| ("model", m))?, model, true)
    };
    if rest.trim().is_empty() {
        return Err((
            "model",
            format!("`{model}` names no model after the provider"),
        ));
    }
    Ok((provider, rest.to_owned(), inferred))
}

fn unknown_prefix(prefix: &str, rest: &str) -> String {
    if prefix == "vllm" {
        return format!(
            "`vllm/` runs vLLM inside LiteLLM's process; for a vLLM server use \
             `hosted_vllm/{rest}` with its api_base"
        );
    }
    format!("provider `{prefix}/` is not supported: {SUPPORTED}")
}

/// LiteLLM's inference for a bare model name (the names its model map knows).
fn infer(model: &str) -> Result<Provider, String> {
    let lower = model.to_ascii_lowercase();
    if lower.starts_with("claude") {
        Ok(Provider::Anthropic)
    } else if ["gpt-", "o1", "o3", "o4", "chatgpt-"]
        .iter()
        .any(|p| lower.starts_with(p))
    {
        Ok(Provider::Openai)
    } else {
        Err(format!(
            "`{model}` has no provider prefix and is not a model LiteLLM knows by name: \
             {SUPPORTED} (e.g. `hosted_vllm/{model}` with its api_base)"
        ))
    }
}

/// Why a deployment is not a chat model, from `model_info.mode` (LiteLLM's own marker) or a
/// well-known non-chat model name. Switchyard serves the Messages API, a chat API: routing
/// Claude Code to an embedding model would only produce errors.
pub(super) fn non_chat(mode: Option<&str>, model: &str) -> Option<String> {
    if let Some(mode) = mode {
        return (mode != "chat").then(|| {
            format!(
                "`mode: {mode}` is not a chat model; Switchyard serves the Messages API \
                 (chat) only"
            )
        });
    }
    let name = model.to_ascii_lowercase();
    let name = name.rsplit('/').next().unwrap_or(&name);
    let kinds: &[(&[&str], &str)] = &[
        (&["embed"], "an embedding model"),
        (&["rerank"], "a rerank model"),
        (&["whisper", "transcribe"], "a speech-to-text model"),
        (&["tts-", "-tts"], "a text-to-speech model"),
        (
            &["dall-e", "gpt-image", "imagen", "stable-diffusion"],
            "an image model",
        ),
        (&["moderation"], "a moderation model"),
    ];
    kinds
        .iter()
        .find(|(marks, _)| marks.iter().any(|m| name.contains(m)))
        .map(|(_, kind)| {
            format!(
                "`{model}` is {kind}, not a chat model; Switchyard serves the Messages API \
                 (chat) only"
            )
        })
}
