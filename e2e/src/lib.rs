//! End-to-end support for Switchyard: a mock vLLM server, real-client tests
//! and load tools.

pub mod fault_backend;
pub mod mock_vllm;
pub mod proxy_process;
pub mod testkit;
