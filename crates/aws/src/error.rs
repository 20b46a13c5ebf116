//! The one place AWS SDK errors become mvi [`Error`]s.
//!
//! The service's error code decides first (`NoSuchKey`, `PreconditionFailed`, `SlowDown`),
//! then the HTTP status (HEAD answers have no body, so no code), then the kind of transport
//! failure. Anything else is [`ErrorKind::Internal`], keeping the SDK error as the source.

// Every aws-sdk-* crate re-exports these two from the smithy runtime, so one mapping serves
// all services whichever features are on.
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use mvi_core::{Error, ErrorKind, Op};

/// The kind an AWS error code stands for, if it is one mvi knows.
pub fn kind_of_code(code: &str) -> Option<ErrorKind> {
    // EC2 qualifies its codes: `InvalidVpcID.NotFound`, `InvalidGroup.Duplicate`,
    // `InvalidSubnetID.Malformed`.
    if code.ends_with(".NotFound") {
        return Some(ErrorKind::NotFound);
    }
    if code.ends_with(".Duplicate") {
        return Some(ErrorKind::AlreadyExists);
    }
    if code.ends_with(".Malformed") {
        return Some(ErrorKind::InvalidArgument);
    }
    Some(match code {
        // S3, DynamoDB
        "NoSuchBucket"
        | "NoSuchKey"
        | "NoSuchUpload"
        | "NotFound"
        | "ResourceNotFoundException"
        // KMS, CloudWatch Logs, CloudWatch
        | "NotFoundException"
        | "ResourceNotFound"
        // ECR
        | "RepositoryNotFoundException"
        | "ImageNotFoundException"
        | "LayersNotFoundException"
        | "UploadNotFoundException"
        // ECS
        | "ClusterNotFoundException"
        | "ServiceNotFoundException"
        | "ServiceNotActiveException"
        | "TargetNotFoundException"
        | "TaskSetNotFoundException"
        // Application Auto Scaling
        | "ObjectNotFoundException"
        // SSM
        | "ParameterNotFound"
        // ELBv2
        | "LoadBalancerNotFound"
        | "TargetGroupNotFound"
        | "ListenerNotFound"
        | "RuleNotFound"
        | "SubnetNotFound"
        | "InvalidSecurityGroup"
        // RDS
        | "DBInstanceNotFound"
        | "DBInstanceNotFoundFault"
        | "DBSnapshotNotFound"
        | "DBSnapshotNotFoundFault"
        | "DBSubnetGroupNotFoundFault"
        | "DBSubnetGroupNotFound"
        // IAM
        | "NoSuchEntity" => ErrorKind::NotFound,
        "BucketAlreadyOwnedByYou"
        | "BucketAlreadyExists"
        | "ResourceInUseException"
        | "AlreadyExistsException"
        | "ResourceAlreadyExistsException"
        | "RepositoryAlreadyExistsException"
        | "ImageAlreadyExistsException"
        | "ImageTagAlreadyExistsException"
        | "LayerAlreadyExistsException"
        | "DuplicateLoadBalancerName"
        | "DuplicateTargetGroupName"
        | "DuplicateListener"
        | "DBInstanceAlreadyExists"
        | "DBInstanceAlreadyExistsFault"
        | "DBSnapshotAlreadyExists"
        | "DBSnapshotAlreadyExistsFault"
        | "DBSubnetGroupAlreadyExists"
        | "DBSubnetGroupAlreadyExistsFault"
        // IAM
        | "EntityAlreadyExists" => ErrorKind::AlreadyExists,
        "PreconditionFailed"
        | "ConditionalRequestConflict"
        | "BucketNotEmpty"
        | "NotModified"
        | "ConditionalCheckFailedException"
        | "KMSInvalidStateException"
        | "RepositoryNotEmptyException"
        | "ResourceInUse"
        | "DependencyViolation"
        | "IncorrectInstanceState"
        | "IncorrectState"
        | "InvalidDBInstanceState"
        | "InvalidDBInstanceStateFault"
        | "InvalidDBSnapshotState"
        | "InvalidDBSnapshotStateFault" => ErrorKind::PreconditionFailed,
        "InvalidBucketName"
        | "InvalidArgument"
        | "InvalidRange"
        | "InvalidRequest"
        | "InvalidPart"
        | "InvalidPartOrder"
        | "EntityTooSmall"
        | "EntityTooLarge"
        | "KeyTooLongError"
        | "MalformedXML"
        | "ValidationException"
        | "ValidationError"
        | "InvalidParameterException"
        | "InvalidParameterValue"
        | "InvalidParameterValueException"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "InvalidCiphertextException"
        | "InvalidKeyUsageException"
        | "InvalidAliasNameException"
        | "InvalidSequenceTokenException"
        | "InvalidLayerException"
        | "InvalidLayerPartException"
        | "ClientException"
        | "InvalidConfigurationRequest"
        | "InvalidTarget"
        | "InvalidSubnet"
        | "InvalidSubnet.Range"
        | "InvalidSubnet.Conflict"
        | "InvalidVpc.Range"
        | "InvalidCidrBlock" => ErrorKind::InvalidArgument,
        "AccessDenied"
        | "AccessDeniedException"
        | "AllAccessDisabled"
        | "DisabledException"
        | "UnauthorizedOperation"
        | "OperationNotPermitted" => ErrorKind::PermissionDenied,
        "InvalidAccessKeyId"
        | "SignatureDoesNotMatch"
        | "ExpiredToken"
        | "InvalidToken"
        | "UnrecognizedClientException"
        | "AuthFailure"
        | "InvalidClientTokenId" => ErrorKind::Unauthenticated,
        "SlowDown"
        | "Throttling"
        | "ThrottlingException"
        | "RequestLimitExceeded"
        | "TooManyRequestsException"
        | "ProvisionedThroughputExceededException" => ErrorKind::RateLimited,
        "ServiceUnavailable"
        | "ServiceUnavailableException"
        | "InsufficientInstanceCapacity"
        | "InsufficientDBInstanceCapacity"
        | "ServerException"
        | "KMSInternalException"
        | "DependencyTimeoutException" => ErrorKind::Unavailable,
        "RequestTimeout" | "RequestTimeoutException" => ErrorKind::Timeout,
        // ECR's layer uploads and pushes, CloudWatch's paging and its server fault
        "ImageDigestDoesNotMatchException"
        | "EmptyUploadException"
        | "LayerPartTooSmallException"
        | "InvalidNextToken"
        | "InvalidFormat" => ErrorKind::InvalidArgument,
        "InternalServiceError" => ErrorKind::Unavailable,
        _ => return None,
    })
}

/// The kind an HTTP status stands for, if any.
pub fn kind_of_status(status: u16) -> Option<ErrorKind> {
    Some(match status {
        404 => ErrorKind::NotFound,
        304 | 412 => ErrorKind::PreconditionFailed,
        400 | 411 | 416 => ErrorKind::InvalidArgument,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        408 => ErrorKind::Timeout,
        429 => ErrorKind::RateLimited,
        503 => ErrorKind::Unavailable,
        _ => return None,
    })
}

/// Maps an SDK error of `op` about `resource` (a bucket, `bucket/key`) to an mvi error.
pub fn map<E>(op: Op, resource: impl Into<String>, err: SdkError<E, HttpResponse>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let resource = resource.into();
    let (kind, message) = match &err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let code = ctx.err().code();
            let kind = code
                .and_then(kind_of_code)
                .or_else(|| kind_of_status(status))
                .unwrap_or(ErrorKind::Internal);
            let message = match (code, ctx.err().message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                (None, Some(m)) => format!("HTTP {status}: {m}"),
                (None, None) => format!("HTTP {status}"),
            };
            (kind, message)
        }
        SdkError::TimeoutError(_) => (ErrorKind::Timeout, "the request timed out".to_owned()),
        SdkError::DispatchFailure(d) if d.is_timeout() => {
            (ErrorKind::Timeout, "the request timed out".to_owned())
        }
        SdkError::DispatchFailure(d) if d.is_io() => (
            ErrorKind::Unavailable,
            format!("cannot reach the service: {err:?}"),
        ),
        _ => (ErrorKind::Internal, format!("{err:?}")),
    };
    op.err(kind, resource, message).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_statuses() {
        assert_eq!(kind_of_code("NoSuchKey"), Some(ErrorKind::NotFound));
        assert_eq!(
            kind_of_code("BucketAlreadyOwnedByYou"),
            Some(ErrorKind::AlreadyExists)
        );
        assert_eq!(kind_of_code("SlowDown"), Some(ErrorKind::RateLimited));
        assert_eq!(kind_of_code("Whatever"), None);
        assert_eq!(
            kind_of_code("ConditionalCheckFailedException"),
            Some(ErrorKind::PreconditionFailed)
        );
        assert_eq!(
            kind_of_code("ResourceInUseException"),
            Some(ErrorKind::AlreadyExists)
        );
        assert_eq!(
            kind_of_code("InvalidVpcID.NotFound"),
            Some(ErrorKind::NotFound)
        );
        assert_eq!(
            kind_of_code("InvalidGroup.Duplicate"),
            Some(ErrorKind::AlreadyExists)
        );
        assert_eq!(
            kind_of_code("DBInstanceNotFound"),
            Some(ErrorKind::NotFound)
        );
        assert_eq!(kind_of_status(412), Some(ErrorKind::PreconditionFailed));
        assert_eq!(kind_of_status(503), Some(ErrorKind::Unavailable));
        assert_eq!(kind_of_status(500), None);
    }
}
