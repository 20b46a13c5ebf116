//! AWS's JSON protocols (`awsJson1_0`, `awsJson1_1`): a POST to `/` naming its operation in
//! `X-Amz-Target` (`DynamoDB_20120810.PutItem`, `TrentService.Encrypt`,
//! `Logs_20140328.PutLogEvents`), a JSON body, a JSON answer or a JSON error (`__type`,
//! `message`) with the status clients map.
//!
//! Every request is read whole (at most [`MAX_BODY`] bytes), its SigV4 signature verified
//! against the access key it names, then handed to its service's door with the caller, whose
//! policy each operation consults for the IAM action and ARN it needs.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response};
use mvi_core::access::{Account, Request as AccessRequest};
use mvi_core::{Error, ErrorKind};
use serde_json::Value as Json;

use super::keys::{AccessKeys, Principal};
use super::sigv4::Authorization;
use super::{Backends, cloudwatch, dynamodb, kms, logs};

/// The largest JSON request body: DynamoDB's BatchWriteItem takes 16 MB.
pub(crate) const MAX_BODY: usize = 16 * 1024 * 1024;

/// A JSON-protocol service the endpoints serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonService {
    DynamoDb,
    Kms,
    Logs,
    CloudWatch,
}

impl JsonService {
    /// The service and operation an `X-Amz-Target` names.
    fn of_target(target: &str) -> Option<(JsonService, &str)> {
        let (prefix, operation) = target.split_once('.')?;
        let service = match prefix {
            "DynamoDB_20120810" => JsonService::DynamoDb,
            "TrentService" => JsonService::Kms,
            "Logs_20140328" => JsonService::Logs,
            "GraniteServiceVersion20100801" => JsonService::CloudWatch,
            _ => return None,
        };
        Some((service, operation))
    }

    /// The service name signatures are scoped to.
    fn signing_name(self) -> &'static str {
        match self {
            JsonService::DynamoDb => "dynamodb",
            JsonService::Kms => "kms",
            JsonService::Logs => "logs",
            JsonService::CloudWatch => "monitoring",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            JsonService::DynamoDb | JsonService::CloudWatch => "application/x-amz-json-1.0",
            JsonService::Kms | JsonService::Logs => "application/x-amz-json-1.1",
        }
    }
}

/// An error in a JSON protocol's shape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct JsonError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
    /// More fields of the error body (DynamoDB's `CancellationReasons`).
    pub(crate) extra: Option<(&'static str, Json)>,
}

impl JsonError {
    /// A 400 with `code`.
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        JsonError {
            status: 400,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// A ValidationException (the request itself is wrong).
    pub(crate) fn validation(message: impl Into<String>) -> Self {
        JsonError::new("ValidationException", message)
    }

    /// A SerializationException (the body is not the JSON the operation takes).
    pub(crate) fn serialization(message: impl Into<String>) -> Self {
        JsonError::new("SerializationException", message)
    }

    /// An error of the services that have no code of their own for it.
    pub(crate) fn of_kind(e: &Error) -> Self {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::InvalidArgument => JsonError::validation(e.message()),
            ErrorKind::PermissionDenied => JsonError::new("AccessDeniedException", message),
            ErrorKind::Unauthenticated => JsonError::new("UnrecognizedClientException", message),
            ErrorKind::RateLimited => JsonError::new("ThrottlingException", message),
            ErrorKind::Unavailable | ErrorKind::Timeout => JsonError {
                status: 503,
                ..JsonError::new("ServiceUnavailable", message)
            },
            _ => JsonError {
                status: 500,
                ..JsonError::new("InternalFailure", message)
            },
        }
    }
}

pub(crate) type JsonResult = Result<Json, JsonError>;

/// A request body, read with the errors AWS's JSON services give for missing or mistyped
/// fields.
pub(crate) struct Input(pub(crate) Json);

impl Input {
    pub(crate) fn get(&self, field: &str) -> Option<&Json> {
        self.0.get(field).filter(|v| !v.is_null())
    }

    pub(crate) fn str(&self, field: &str) -> Result<Option<&str>, JsonError> {
        match self.get(field) {
            None => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(JsonError::serialization(format!(
                "{field} must be a string"
            ))),
        }
    }

    pub(crate) fn required_str(&self, field: &str) -> Result<&str, JsonError> {
        self.str(field)?.ok_or_else(|| {
            JsonError::validation(format!(
                "1 validation error detected: Value null at '{}' failed to satisfy constraint: \
                 Member must not be null",
                lower_first(field)
            ))
        })
    }

    /// A page size (`Limit`, `limit`), at least 1.
    pub(crate) fn limit(&self, field: &str) -> Result<Option<usize>, JsonError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => Ok(Some(n as usize)),
                _ => Err(JsonError::validation(format!(
                    "1 validation error detected: Value '{v}' at '{}' failed to satisfy \
                     constraint: Member must have value greater than or equal to 1",
                    lower_first(field)
                ))),
            },
        }
    }

    /// A whole number (a timestamp in milliseconds, a count).
    pub(crate) fn i64(&self, field: &str) -> Result<Option<i64>, JsonError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| JsonError::serialization(format!("{field} must be an integer"))),
        }
    }

    /// A binary field (base64 in JSON).
    pub(crate) fn blob(&self, field: &str) -> Result<Option<Vec<u8>>, JsonError> {
        use base64::Engine;
        self.str(field)?
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|_| JsonError::serialization(format!("{field} must be base64")))
            })
            .transpose()
    }

    /// A map of strings to strings (KMS's `EncryptionContext`).
    pub(crate) fn string_map(
        &self,
        field: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, JsonError> {
        match self.get(field) {
            None => Ok(Default::default()),
            Some(Json::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Json::String(s) => Ok((k.clone(), s.clone())),
                    _ => Err(JsonError::serialization(format!(
                        "{field} maps strings to strings"
                    ))),
                })
                .collect(),
            Some(_) => Err(JsonError::serialization(format!(
                "{field} must be an object"
            ))),
        }
    }
}

/// `TableName` → `tableName`, as AWS's validation messages name fields.
fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Who made a request, and the account its ARNs are in.
pub(crate) struct Caller {
    pub(crate) principal: Arc<Principal>,
    pub(crate) account: Account,
}

impl Caller {
    /// Refuses unless the caller's policy allows `action` on `resource`.
    pub(crate) fn require(&self, action: &str, resource: &str) -> Result<(), JsonError> {
        self.require_in(action, resource, &[])
    }

    /// Refuses unless the caller's policy allows `action` on `resource` with the request's
    /// condition keys `context` (`cloudwatch:namespace`).
    pub(crate) fn require_in(
        &self,
        action: &str,
        resource: &str,
        context: &[(&str, &str)],
    ) -> Result<(), JsonError> {
        let request = AccessRequest {
            action,
            resource,
            context,
        };
        if self.principal.policy.allows(&request) {
            return Ok(());
        }
        Err(JsonError::new(
            "AccessDeniedException",
            format!(
                "User: {} is not authorized to perform: {action} on resource: {resource} \
                 because no identity-based policy allows the {action} action",
                self.principal.name
            ),
        ))
    }
}

/// What the JSON doors share.
pub(crate) struct JsonDoors {
    pub(crate) keys: Arc<AccessKeys>,
    pub(crate) account: Account,
    pub(crate) backends: Arc<Backends>,
}

impl JsonDoors {
    /// Serves one request that carries `X-Amz-Target`.
    pub(crate) async fn serve(&self, req: Request<Incoming>) -> Response<s3s::Body> {
        let target = req
            .headers()
            .get("x-amz-target")
            .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
            .unwrap_or_default();
        let Some((service, operation)) = JsonService::of_target(&target) else {
            return error_response(
                "application/x-amz-json-1.0",
                &JsonError::new(
                    "UnknownOperationException",
                    format!("this endpoint does not serve the operation {target:?}"),
                ),
            );
        };
        let operation = operation.to_owned();
        let answer = match self.call(service, &operation, req).await {
            Ok(body) => body,
            Err(e) => return error_response(service.content_type(), &e),
        };
        let mut resp = Response::new(s3s::Body::from(answer.to_string()));
        set_content_type(&mut resp, service.content_type());
        resp
    }

    async fn call(
        &self,
        service: JsonService,
        operation: &str,
        req: Request<Incoming>,
    ) -> JsonResult {
        if req.method() != hyper::Method::POST {
            return Err(JsonError::serialization(format!(
                "the JSON protocol takes POST requests, not {}",
                req.method()
            )));
        }
        let auth_err = |e: super::sigv4::SigError| {
            let (code, message) = e.code_and_message();
            JsonError::new(code, message)
        };
        let length = req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Refused before it is read: the client learns at once, and no slot waits on it.
        if length.is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large());
        }
        let (parts, body) = req.into_parts();
        let auth =
            Authorization::parse(&parts.headers, service.signing_name()).map_err(auth_err)?;
        let Some(issued) = self.keys.lookup(auth.key_id) else {
            return Err(auth_err(super::sigv4::SigError::UnknownKey));
        };
        let body = read_body(body).await?;
        let path = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        auth.verify(
            &issued.secret,
            parts.method.as_str(),
            &path,
            &parts.headers,
            &body,
            SystemTime::now(),
        )
        .map_err(auth_err)?;
        let input: Json = serde_json::from_slice(&body).map_err(|e| {
            JsonError::serialization(format!("the request body is not valid JSON: {e}"))
        })?;
        if !input.is_object() {
            return Err(JsonError::serialization(
                "the request body must be a JSON object",
            ));
        }
        let caller = Caller {
            principal: issued.principal,
            account: self.account.clone(),
        };
        let b = &self.backends;
        match service {
            JsonService::DynamoDb => {
                let kv = b.kv().ok_or_else(closed)?;
                dynamodb::call(&*kv, &caller, operation, input).await
            }
            JsonService::Kms => {
                let crypto = b.crypto().ok_or_else(closed)?;
                kms::call(&*crypto, &caller, operation, input).await
            }
            JsonService::Logs => {
                let logs = b.logs().ok_or_else(closed)?;
                logs::call(&*logs, &caller, operation, input).await
            }
            JsonService::CloudWatch => {
                let metrics = b.metrics().ok_or_else(closed)?;
                cloudwatch::call(&*metrics, &caller, operation, input).await
            }
        }
    }
}

fn closed() -> JsonError {
    JsonError {
        status: 503,
        ..JsonError::new("ServiceUnavailable", "the local cloud is closing")
    }
}

async fn read_body(body: Incoming) -> Result<Bytes, JsonError> {
    match Limited::new(body, MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(e) => Err(JsonError::serialization(format!(
            "the request body could not be read: {e}"
        ))),
    }
}

fn too_large() -> JsonError {
    JsonError {
        status: 413,
        ..JsonError::new(
            "RequestEntityTooLarge",
            format!("a request body takes at most {MAX_BODY} bytes"),
        )
    }
}

fn set_content_type(resp: &mut Response<s3s::Body>, content_type: &'static str) {
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
}

/// An error as a response.
pub(crate) fn error_response(content_type: &'static str, e: &JsonError) -> Response<s3s::Body> {
    let mut body = serde_json::json!({ "__type": e.code, "message": e.message });
    if let (Some((field, value)), Some(map)) = (&e.extra, body.as_object_mut()) {
        map.insert((*field).to_owned(), value.clone());
    }
    let mut resp = Response::new(s3s::Body::from(body.to_string()));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(e.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    set_content_type(&mut resp, content_type);
    resp
}
