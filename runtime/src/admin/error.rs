//! Errors of the admin API: JSON `{"error": "..."}` with the status code that says what kind.

use axum::{
    Json,
    http::StatusCode,
    response::{IntoResponse, Response},
};

use crate::worker::{DeleteError, DeployError, LifecycleError, StateCommandError, TriggerError};

/// An error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn unauthorized(message: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

impl From<TriggerError> for ApiError {
    fn from(error: TriggerError) -> Self {
        let status = match &error {
            TriggerError::NoSuchFunction(_) => StatusCode::NOT_FOUND,
            TriggerError::NotRunning { .. } => StatusCode::CONFLICT,
            TriggerError::NoOutput { .. } => StatusCode::BAD_REQUEST,
            TriggerError::TimedOut { .. } => StatusCode::GATEWAY_TIMEOUT,
            TriggerError::Publish { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, error.to_string())
    }
}

impl From<StateCommandError> for ApiError {
    fn from(error: StateCommandError) -> Self {
        match error {
            StateCommandError::Function(error) => error.into(),
            StateCommandError::State { ref source, .. } if source.is_not_found() => Self::not_found(error.to_string()),
            StateCommandError::State { ref source, .. } if source.is_invalid_argument() => {
                Self::bad_request(error.to_string())
            }
            StateCommandError::State { .. } => Self::new(StatusCode::INTERNAL_SERVER_ERROR, error.to_string()),
        }
    }
}

impl From<DeleteError> for ApiError {
    fn from(error: DeleteError) -> Self {
        let status = match &error {
            DeleteError::NoSuchFunction(_) => StatusCode::NOT_FOUND,
            DeleteError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, error.to_string())
    }
}

impl From<DeployError> for ApiError {
    fn from(error: DeployError) -> Self {
        let status = match &error {
            DeployError::BadRequest(_)
            | DeployError::DigestMismatch { .. }
            | DeployError::Plugin(_)
            | DeployError::Spec(_)
            | DeployError::Refused(_) => StatusCode::BAD_REQUEST,
            DeployError::Exists(_) | DeployError::PluginConflict { .. } => StatusCode::CONFLICT,
            DeployError::NoSuchFunction(_) => StatusCode::NOT_FOUND,
            DeployError::Write { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            DeployError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, error.to_string())
    }
}

impl From<LifecycleError> for ApiError {
    fn from(error: LifecycleError) -> Self {
        let status = match &error {
            LifecycleError::NoSuchFunction(_) | LifecycleError::NoSuchInstance { .. } => StatusCode::NOT_FOUND,
            LifecycleError::NotRunning { .. } => StatusCode::CONFLICT,
            LifecycleError::Start { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            LifecycleError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::new(status, error.to_string())
    }
}
