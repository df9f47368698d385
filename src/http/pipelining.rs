//! A workaround for pipelined requests stalling in actix-http's HTTP/1 dispatcher.
//!
//! The dispatcher decodes at most 16 pipelined requests ahead; once it has answered them it
//! waits for the socket to become readable again before decoding the rest of its read buffer.
//! When the client has sent everything in one write, the socket never becomes readable again
//! and the remaining requests wait until the client sends more (seen: 2,000 requests in one
//! write stalled after 704 or 1,409 answers in 7 of 20 runs). Yielding once after each answer
//! is ready makes the dispatcher poll again, and each poll decodes what is buffered. The cost
//! is one extra poll of the connection per request.

use actix_web::body::MessageBody;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse};

/// `wrap_fn` middleware: the answer of `service`, after one yield to the connection's task.
pub fn answer_then_yield<S, B>(
    request: ServiceRequest,
    service: &S,
) -> impl std::future::Future<Output = Result<ServiceResponse<B>, actix_web::Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody,
{
    let answer = service.call(request);
    async move {
        let answer = answer.await;
        actix_rt::task::yield_now().await;
        answer
    }
}
