//! The clients a destination actor can hold, behind one interface: how many events a
//! request may carry, and sending them.

use std::sync::Arc;

use futures::future::LocalBoxFuture;
use switchyard_schemas::Event;

use super::config::DestinationKind;
use super::kafka::KafkaClient;
use super::webhook::{DeliveryError, WebhookClient};

#[derive(Debug, Clone)]
pub enum Client {
    Webhook(WebhookClient),
    Kafka(KafkaClient),
}

impl Client {
    /// `None` for a blackhole, which needs no client. Must run on the actor's thread.
    pub fn new(kind: &DestinationKind) -> Result<Option<Client>, String> {
        Ok(match kind {
            DestinationKind::Webhook(webhook) => Some(Client::Webhook(WebhookClient::new(Arc::new(webhook.clone())))),
            DestinationKind::Kafka(kafka) => Some(Client::Kafka(
                KafkaClient::new(kafka).map_err(|e| format!("kafka producer: {e}"))?,
            )),
            DestinationKind::Blackhole(_) => None,
        })
    }

    pub fn batch_max_events(&self) -> usize {
        match self {
            Client::Webhook(webhook) => webhook.batch_max_events(),
            Client::Kafka(kafka) => kafka.batch_max_events(),
        }
    }

    pub fn send(
        &self,
        source_id: Arc<str>,
        events: Vec<Arc<Event>>,
    ) -> LocalBoxFuture<'static, Result<(), DeliveryError>> {
        match self {
            Client::Webhook(webhook) => {
                let body = match webhook.body(&events) {
                    Ok(body) => body,
                    Err(error) => {
                        let error = DeliveryError::permanent(format!("event could not be encoded: {error}"));
                        return Box::pin(futures::future::ready(Err(error)));
                    }
                };
                Box::pin(webhook.clone().send(body))
            }
            Client::Kafka(kafka) => Box::pin(kafka.clone().send(source_id, events)),
        }
    }
}
