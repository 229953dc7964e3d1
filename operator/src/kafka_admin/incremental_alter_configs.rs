//! IncrementalAlterConfigs through librdkafka's C API: rust-rdkafka wraps only the legacy
//! AlterConfigs, which replaces every config of a topic and which tansu does not implement.

use std::collections::BTreeMap;
use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys as sys;

use super::admin_request::admin_request;

/// Sets `configs` on `topic` (SET operations only; other configs untouched). Blocks up to
/// `timeout`: call it from a blocking task.
pub fn set_topic_configs(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    configs: &BTreeMap<String, String>,
    timeout: Duration,
) -> Result<(), String> {
    let name = CString::new(topic).map_err(|_| format!("topic name {topic:?} contains a NUL byte"))?;
    let mut owned = Vec::new();
    for (k, v) in configs {
        let k = CString::new(k.as_str()).map_err(|_| format!("config name {k:?} contains a NUL byte"))?;
        let v = CString::new(v.as_str()).map_err(|_| format!("config value {v:?} contains a NUL byte"))?;
        owned.push((k, v));
    }
    // SAFETY: every pointer passed to librdkafka is either created here and destroyed
    // before return, or owned by `admin`, which outlives this call; the strings outlive
    // the calls that read them (librdkafka copies them).
    unsafe {
        let resource =
            sys::rd_kafka_ConfigResource_new(sys::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC, name.as_ptr());
        if resource.is_null() {
            return Err("cannot allocate a config resource".to_string());
        }
        for (k, v) in &owned {
            let error = sys::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                k.as_ptr(),
                sys::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                v.as_ptr(),
            );
            if !error.is_null() {
                let message = CStr::from_ptr(sys::rd_kafka_error_string(error)).to_string_lossy().into_owned();
                sys::rd_kafka_error_destroy(error);
                sys::rd_kafka_ConfigResource_destroy(resource);
                return Err(message);
            }
        }
        let op = sys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS;
        let result = admin_request(
            admin,
            op,
            timeout,
            |rk, options, queue| {
                let mut resources = [resource];
                sys::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue);
            },
            |event| {
                let answer = sys::rd_kafka_event_IncrementalAlterConfigs_result(event);
                let mut count = 0usize;
                let results = sys::rd_kafka_IncrementalAlterConfigs_result_resources(answer, &mut count);
                let mut outcome = Ok(());
                for i in 0..count {
                    let r = *results.add(i);
                    if sys::rd_kafka_ConfigResource_error(r) != sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                        let text = sys::rd_kafka_ConfigResource_error_string(r);
                        let message = if text.is_null() {
                            format!("{:?}", sys::rd_kafka_ConfigResource_error(r))
                        } else {
                            CStr::from_ptr(text).to_string_lossy().into_owned()
                        };
                        outcome = Err(message);
                    }
                }
                outcome
            },
        );
        sys::rd_kafka_ConfigResource_destroy(resource);
        result
    }
}
