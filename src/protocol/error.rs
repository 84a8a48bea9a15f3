//! The session's error enum and its one mapping to FTP replies.

use thiserror::Error;

use super::command::ParseError;
use super::reply::{Code, Reply};
use super::vpath::PathError;

/// Everything that makes a command fail, from parsing to storage and data connections.
/// The driver converts storage and engine failures into these variants; [`Reply::from`] is the
/// only place where they become reply codes.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SessionError {
    #[error("{0}")]
    Parse(ParseError),
    #[error("Command line too long.")]
    LineTooLong,
    #[error("{0}")]
    BadArgument(String),
    #[error("Please login with USER and PASS.")]
    NotLoggedIn,
    #[error("Login incorrect.")]
    LoginIncorrect,
    /// A GSI login whose certificate subject may not act as the user asked for.
    #[error("No local user for {0} in the grid-mapfile.")]
    NotMapped(String),
    #[error("Too many failed logins; closing connection.")]
    TooManyFailures,
    #[error("Anonymous access is disabled on this server.")]
    AnonymousDisabled,
    #[error("{0}")]
    BadSequence(&'static str),
    #[error("{0}")]
    Superfluous(&'static str),
    /// `--user-root`: the user has no directory of their own to log in to.
    #[error("No root directory for {0} on this server.")]
    NoUserRoot(String),
    /// `--require-tls`: USER before AUTH TLS (or GSI) on a connection that is not loopback.
    #[error("This server requires TLS (AUTH TLS) or GSI before USER.")]
    TlsRequired,
    /// RFC 2228: after AUTH every command must come wrapped (ENC/MIC/CONF).
    #[error("Command protection level denied: send every command wrapped (ENC).")]
    Unprotected,
    /// RFC 2228: the security exchange, or a wrapped command, was refused.
    #[error("{0}")]
    SecurityFailed(String),
    /// RFC 2228: a PROT level the mechanism does not offer.
    #[error("{0}")]
    ProtNotSupported(&'static str),
    #[error("{0}")]
    NotImplemented(&'static str),
    #[error("{0}")]
    ParamNotImplemented(String),
    #[error("Cannot do passive retrieve in E mode.")]
    PassiveRetrieveInModeE,
    #[error("Network protocol not supported.")]
    ProtocolNotSupported,
    #[error("PORT to a host other than the client, or to a port below 1024, is refused.")]
    PortRefused,
    #[error("Use PORT or PASV first.")]
    NoDataChannel,
    #[error("{0}")]
    Path(PathError),
    #[error("Permission denied: this account is read-only.")]
    ReadOnly,
    #[error("Offset too large.")]
    OffsetOverflow,
    #[error("File name too long.")]
    NameTooLong,
    #[error("No such file or directory.")]
    NotFound,
    #[error("Permission denied.")]
    PermissionDenied,
    #[error("File exists.")]
    AlreadyExists,
    #[error("Not a directory.")]
    NotADirectory,
    #[error("Not a plain file.")]
    NotAFile,
    #[error("Directory not empty.")]
    NotEmpty,
    #[error("No space left on device.")]
    NoSpace,
    #[error("Can't open data connection: {0}")]
    DataConnection(String),
    #[error("Data connection lost; transfer aborted: {0}")]
    ConnectionLost(String),
    #[error("Transfer aborted.")]
    Aborted,
    #[error("Unsupported checksum algorithm '{0}'.")]
    UnknownChecksum(String),
    #[error("Checksum mismatch: expected {expected}, got {got}.")]
    ChecksumMismatch { expected: String, got: String },
    #[error("Server is shutting down.")]
    ShuttingDown,
    #[error("Local error: {0}")]
    Local(String),
    #[error("Internal error: {0}")]
    Internal(String),
}

impl SessionError {
    /// The reply code for this error.
    pub fn code(&self) -> Code {
        use SessionError::*;
        match self {
            Parse(ParseError::UnknownVerb(_)) | Parse(ParseError::NotUtf8) | Parse(ParseError::Empty) => {
                Code::SYNTAX_ERROR
            }
            LineTooLong | PassiveRetrieveInModeE => Code::SYNTAX_ERROR,
            Parse(ParseError::BadArgument(_)) | BadArgument(_) | PortRefused | OffsetOverflow => {
                Code::PARAM_SYNTAX_ERROR
            }
            NotLoggedIn | LoginIncorrect | NotMapped(_) | NoUserRoot(_) | AnonymousDisabled => Code::NOT_LOGGED_IN,
            TooManyFailures | ShuttingDown => Code::NOT_AVAILABLE,
            BadSequence(_) => Code::BAD_SEQUENCE,
            Superfluous(_) => Code::SUPERFLUOUS,
            NotImplemented(_) => Code::NOT_IMPLEMENTED,
            Unprotected => Code::PROTECTION_DENIED,
            TlsRequired => Code::POLICY_DENIED,
            SecurityFailed(_) => Code::SECURITY_FAILED,
            ProtNotSupported(_) => Code::PROT_NOT_SUPPORTED,
            ParamNotImplemented(_) | UnknownChecksum(_) => Code::PARAM_NOT_IMPLEMENTED,
            ChecksumMismatch { .. } => Code::LOCAL_ERROR,
            ProtocolNotSupported => Code::NET_PROTO_NOT_SUPPORTED,
            NoDataChannel | DataConnection(_) => Code::CANT_OPEN_DATA,
            Path(_) | ReadOnly | NotFound | PermissionDenied | AlreadyExists | NotADirectory | NotAFile | NotEmpty => {
                Code::FILE_UNAVAILABLE
            }
            NoSpace => Code::INSUFFICIENT_STORAGE,
            NameTooLong => Code::NAME_NOT_ALLOWED,
            ConnectionLost(_) | Aborted => Code::TRANSFER_ABORTED,
            Local(_) | Internal(_) => Code::LOCAL_ERROR,
        }
    }
}

impl From<&SessionError> for Reply {
    fn from(e: &SessionError) -> Reply {
        Reply::new(e.code(), e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant maps to the class the RFCs give it: 4xx transient, 5xx permanent.
    #[test]
    fn every_variant_has_its_class() {
        use SessionError::*;
        let permanent = [
            Parse(ParseError::NotUtf8),
            LineTooLong,
            PassiveRetrieveInModeE,
            BadArgument("x".into()),
            NotLoggedIn,
            LoginIncorrect,
            AnonymousDisabled,
            BadSequence("x"),
            NotImplemented("x"),
            ParamNotImplemented("x".into()),
            ProtocolNotSupported,
            PortRefused,
            Path(PathError::Escape),
            ReadOnly,
            OffsetOverflow,
            NameTooLong,
            NotFound,
            PermissionDenied,
            AlreadyExists,
            NotADirectory,
            NotAFile,
            NotEmpty,
            UnknownChecksum("x".into()),
            NotMapped("x".into()),
            NoUserRoot("x".into()),
            TlsRequired,
            Unprotected,
            SecurityFailed("x".into()),
            ProtNotSupported("x"),
        ];
        let transient = [
            TooManyFailures,
            NoDataChannel,
            NoSpace,
            DataConnection("x".into()),
            ConnectionLost("x".into()),
            Aborted,
            ShuttingDown,
            Local("x".into()),
            Internal("x".into()),
            ChecksumMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
        ];
        for e in permanent {
            assert_eq!(e.code().0 / 100, 5, "{e:?}");
        }
        for e in transient {
            assert_eq!(e.code().0 / 100, 4, "{e:?}");
        }
        assert_eq!(Superfluous("x").code().0 / 100, 2);
    }
}
