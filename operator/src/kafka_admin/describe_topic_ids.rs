//! A topic's id through librdkafka's DescribeTopics: rust-rdkafka's metadata leaves topic ids
//! out, and the id is what tells a topic from another one created under the same name.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys as sys;

/// What DescribeTopics said of one topic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TopicLookup {
    Missing,
    /// The topic exists; its id in base64, `None` where the broker gives the zero id.
    Found(Option<String>),
}

/// The zero UUID in librdkafka's base64 form: a broker that keeps no topic ids.
const ZERO_ID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

/// Describes `topic`. Blocks up to `timeout`: call it from a blocking task.
pub fn describe_topic_id(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    timeout: Duration,
) -> Result<TopicLookup, String> {
    let name = CString::new(topic).map_err(|_| format!("topic name {topic:?} contains a NUL byte"))?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: every pointer passed to librdkafka is either created here and destroyed before
    // return, or owned by `admin`, which outlives this call; `name` outlives the collection
    // (librdkafka copies it); the descriptions read belong to `event`, destroyed last.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = sys::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        if topics.is_null() {
            return Err("cannot allocate a topic collection".to_string());
        }
        let options = sys::rd_kafka_AdminOptions_new(rk, sys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS);
        let mut errstr = [0 as std::os::raw::c_char; 256];
        sys::rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        let queue = sys::rd_kafka_queue_new(rk);
        sys::rd_kafka_DescribeTopics(rk, topics, options, queue);
        let event = sys::rd_kafka_queue_poll(queue, timeout_ms.saturating_add(1000));
        let result = if event.is_null() {
            Err(format!("no answer within {timeout:?}"))
        } else if sys::rd_kafka_event_error(event) != sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            Err(CStr::from_ptr(sys::rd_kafka_event_error_string(event)).to_string_lossy().into_owned())
        } else {
            let answer = sys::rd_kafka_event_DescribeTopics_result(event);
            let mut count = 0usize;
            let described = sys::rd_kafka_DescribeTopics_result_topics(answer, &mut count);
            if count == 0 || described.is_null() {
                Err("DescribeTopics answered no topic".to_string())
            } else {
                let description = *described;
                let error = sys::rd_kafka_TopicDescription_error(description);
                let code = if error.is_null() {
                    sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
                } else {
                    sys::rd_kafka_error_code(error)
                };
                match code {
                    sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR => {
                        let id = sys::rd_kafka_TopicDescription_topic_id(description);
                        let text = if id.is_null() { std::ptr::null() } else { sys::rd_kafka_Uuid_base64str(id) };
                        let id = (!text.is_null())
                            .then(|| CStr::from_ptr(text).to_string_lossy().into_owned())
                            .filter(|id| id != ZERO_ID);
                        Ok(TopicLookup::Found(id))
                    }
                    sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART => Ok(TopicLookup::Missing),
                    other => {
                        let text = sys::rd_kafka_error_string(error);
                        Err(if text.is_null() {
                            format!("{other:?}")
                        } else {
                            CStr::from_ptr(text).to_string_lossy().into_owned()
                        })
                    }
                }
            }
        };
        if !event.is_null() {
            sys::rd_kafka_event_destroy(event);
        }
        sys::rd_kafka_queue_destroy(queue);
        sys::rd_kafka_AdminOptions_destroy(options);
        sys::rd_kafka_TopicCollection_destroy(topics);
        result
    }
}
