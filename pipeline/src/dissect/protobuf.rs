//! Message schemas the user supplies: a protobuf `FileDescriptorSet`
//! (`--proto-descriptor FILE`), given to every dissector through the `Emitter`.
//! gRPC decodes messages with it (`protocols/grpc`); without one, nothing is guessed
//! about message content.

use std::path::Path;

use prost_reflect::{DescriptorPool, MessageDescriptor};

/// Why a descriptor set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DescriptorError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not a protobuf FileDescriptorSet: {1}")]
    Decode(String, prost_reflect::DescriptorError),
}

/// Protobuf descriptors used to decode gRPC messages.
#[derive(Debug, Clone)]
pub struct Descriptors {
    pool: DescriptorPool,
}

impl Descriptors {
    /// Load a serialized `FileDescriptorSet` (`protoc --descriptor_set_out=FILE
    /// --include_imports`).
    pub fn load(path: &Path) -> Result<Descriptors, DescriptorError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| DescriptorError::Read(shown.clone(), e))?;
        let pool = DescriptorPool::decode(bytes.as_slice())
            .map_err(|e| DescriptorError::Decode(shown, e))?;
        Ok(Descriptors { pool })
    }

    /// Input and output message types of `package.Service/Method`.
    pub fn method(&self, rpc_method: &str) -> Option<(MessageDescriptor, MessageDescriptor)> {
        let (service, method) = rpc_method.rsplit_once('/')?;
        let m = self
            .pool
            .get_service_by_name(service)?
            .methods()
            .find(|m| m.name() == method)?;
        Some((m.input(), m.output()))
    }
}
