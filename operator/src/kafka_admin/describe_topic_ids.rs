//! A topic's id through librdkafka's DescribeTopics: rust-rdkafka's metadata leaves topic ids
//! out, and the id is what tells a topic from another one created under the same name.

use std::ffi::{CStr, CString};
use std::time::Duration;

use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka_sys as sys;

use super::admin_request::admin_request;

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
    // SAFETY: the topic collection is created here and destroyed before return; `name`
    // outlives it (librdkafka copies it); `send` issues one DescribeTopics; the descriptions
    // read belong to the event and are copied out before it is destroyed.
    unsafe {
        let mut names = [name.as_ptr()];
        let topics = sys::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), 1);
        if topics.is_null() {
            return Err("cannot allocate a topic collection".to_string());
        }
        let op = sys::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS;
        let result = admin_request(
            admin,
            op,
            timeout,
            |rk, options, queue| sys::rd_kafka_DescribeTopics(rk, topics, options, queue),
            |event| {
                let answer = sys::rd_kafka_event_DescribeTopics_result(event);
                let mut count = 0usize;
                let described = sys::rd_kafka_DescribeTopics_result_topics(answer, &mut count);
                if count == 0 || described.is_null() {
                    return Err("DescribeTopics answered no topic".to_string());
                }
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
            },
        );
        sys::rd_kafka_TopicCollection_destroy(topics);
        result
    }
}
