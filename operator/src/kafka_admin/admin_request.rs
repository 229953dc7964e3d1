//! One librdkafka admin request through its C API, for the requests rust-rdkafka does not
//! wrap (IncrementalAlterConfigs, DescribeTopics): the options with the request timeout, a
//! queue for the answer, the wait, and the event's own error; the caller sends the request
//! and reads the answer.

use std::ffi::CStr;
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys as sys;

/// Runs one admin request of kind `op` on `admin`'s client: `send` issues it with the
/// options and the answer queue made here; `read` reads the answering event when it carries
/// no error. Blocks up to `timeout` (plus a second): call it from a blocking task.
///
/// # Safety
/// `send` must issue exactly one request of kind `op` on the given client, options and
/// queue; `read` must not keep pointers into the event (it is destroyed on return).
pub(super) unsafe fn admin_request<T>(
    admin: &AdminClient<DefaultClientContext>,
    op: sys::rd_kafka_admin_op_t,
    timeout: Duration,
    send: impl FnOnce(*mut sys::rd_kafka_t, *mut sys::rd_kafka_AdminOptions_t, *mut sys::rd_kafka_queue_t),
    read: impl FnOnce(*mut sys::rd_kafka_event_t) -> Result<T, String>,
) -> Result<T, String> {
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: the options, the queue and the event are created here and destroyed before
    // return; the client is owned by `admin`, which outlives this call.
    unsafe {
        let options = sys::rd_kafka_AdminOptions_new(rk, op);
        let mut errstr = [0 as std::os::raw::c_char; 256];
        sys::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        let queue = sys::rd_kafka_queue_new(rk);
        send(rk, options, queue);
        let event = sys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(format!("no answer within {timeout:?}"))
        } else if sys::rd_kafka_event_error(event) != sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(CStr::from_ptr(sys::rd_kafka_event_error_string(event)).to_string_lossy().into_owned())
        } else {
            read(event)
        };
        if !event.is_null() {
            sys::rd_kafka_event_destroy(event);
        }
        sys::rd_kafka_queue_destroy(queue);
        sys::rd_kafka_AdminOptions_destroy(options);
        result
    }
}
