//! [`FlagClient`] as an OpenFeature provider (the `open-feature` crate), behind the
//! `openfeature` cargo feature:
//!
//! ```ignore
//! let mut api = open_feature::OpenFeature::singleton_mut().await;
//! api.set_provider(flags.client().await).await;
//! let client = api.create_client();
//! let on = client.get_bool_value("new-checkout", Some(&ctx), None).await.unwrap_or(false);
//! ```
//!
//! The crate reports a failed evaluation as an `Err` (the caller supplies its default with
//! `unwrap_or`), so the provider turns an evaluation with reason `ERROR` into an
//! `EvaluationError` with the matching code; every other outcome is a `ResolutionDetails`
//! with the variant and the reason.

use async_trait::async_trait;
use open_feature::provider::{
    FeatureProvider, ProviderMetadata, ProviderStatus, ResolutionDetails,
};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, EvaluationResult, StructValue, Value as OfValue,
};
use serde_json::Value as Json;

use super::FlagClient;
use super::eval::{ErrorCode, EvalContext, Evaluation, FlagValue, Reason};

fn metadata() -> &'static ProviderMetadata {
    static META: std::sync::OnceLock<ProviderMetadata> = std::sync::OnceLock::new();
    META.get_or_init(|| ProviderMetadata::new("mvi"))
}

/// The OpenFeature context as ours: the targeting key and the fields that are values (a
/// struct field, an opaque `Any`, is left out; a time is its RFC 3339 text).
fn context(ctx: &EvaluationContext) -> EvalContext {
    let mut out = EvalContext {
        targeting_key: ctx.targeting_key.clone(),
        attributes: Default::default(),
    };
    for (name, v) in &ctx.custom_fields {
        let json = match v {
            EvaluationContextFieldValue::Bool(b) => Json::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Json::from(*i),
            EvaluationContextFieldValue::Float(f) => Json::from(*f),
            EvaluationContextFieldValue::String(s) => Json::String(s.clone()),
            EvaluationContextFieldValue::DateTime(t) => Json::String(t.to_string()),
            EvaluationContextFieldValue::Struct(_) => continue,
        };
        out.attributes.insert(name.clone(), json);
    }
    out
}

fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::Default => EvaluationReason::Default,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Split => EvaluationReason::Split,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Error => EvaluationReason::Error,
    }
}

fn code(c: ErrorCode) -> EvaluationErrorCode {
    match c {
        ErrorCode::ProviderNotReady => EvaluationErrorCode::ProviderNotReady,
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorCode::General => EvaluationErrorCode::General("GENERAL".into()),
    }
}

fn resolved<T, U>(
    e: Evaluation<T>,
    into: impl FnOnce(T) -> U,
) -> EvaluationResult<ResolutionDetails<U>> {
    if let Some(c) = e.error_code {
        let mut err = EvaluationError::builder().code(code(c)).build();
        err.message = e.error_message;
        return Err(err);
    }
    Ok(ResolutionDetails {
        value: into(e.value),
        variant: e.variant,
        reason: Some(reason(e.reason)),
        flag_metadata: None,
    })
}

/// A JSON object as OpenFeature's struct value.
fn to_struct(m: serde_json::Map<String, Json>) -> StructValue {
    fn value(v: Json) -> OfValue {
        match v {
            Json::Null => OfValue::String(String::new()),
            Json::Bool(b) => OfValue::Bool(b),
            Json::Number(n) => n
                .as_i64()
                .map_or_else(|| OfValue::Float(n.as_f64().unwrap_or(0.0)), OfValue::Int),
            Json::String(s) => OfValue::String(s),
            Json::Array(a) => OfValue::Array(a.into_iter().map(value).collect()),
            Json::Object(o) => OfValue::Struct(to_struct(o)),
        }
    }
    StructValue {
        fields: m.into_iter().map(|(k, v)| (k, value(v))).collect(),
    }
}

impl FlagClient {
    fn resolve<T: FlagValue + Default>(&self, key: &str, ctx: &EvaluationContext) -> Evaluation<T> {
        self.evaluate(key, T::default(), &context(ctx))
    }
}

#[async_trait]
impl FeatureProvider for FlagClient {
    fn metadata(&self) -> &ProviderMetadata {
        metadata()
    }

    fn status(&self) -> ProviderStatus {
        if self.is_ready() {
            ProviderStatus::Ready
        } else {
            ProviderStatus::NotReady
        }
    }

    async fn resolve_bool_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<bool>> {
        resolved(self.resolve::<bool>(flag_key, ctx), |v| v)
    }

    async fn resolve_int_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<i64>> {
        resolved(self.resolve::<i64>(flag_key, ctx), |v| v)
    }

    async fn resolve_float_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<f64>> {
        resolved(self.resolve::<f64>(flag_key, ctx), |v| v)
    }

    async fn resolve_string_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<String>> {
        resolved(self.resolve::<String>(flag_key, ctx), |v| v)
    }

    async fn resolve_struct_value(
        &self,
        flag_key: &str,
        ctx: &EvaluationContext,
    ) -> EvaluationResult<ResolutionDetails<StructValue>> {
        resolved(
            self.resolve::<serde_json::Map<String, Json>>(flag_key, ctx),
            to_struct,
        )
    }
}
