//! What one request does in each scenario, and the per-worker state that
//! makes it possible: the worker's customer, its SKU counter and, for
//! add-item, the order it adds lines to (replaced when full or unusable).

use crate::api::{Ack, Api, Failure};
use crate::cli::Scenario;

/// An order may hold at most this many lines (DESIGN.md §4.4: the 101st is a 409).
const MAX_LINES: u32 = 100;

/// What one worker does between requests: its own order and SKU counter.
pub(crate) struct WorkerState {
    worker: u32,
    pub(crate) customer: String,
    order: Option<(String, u32)>,
    next_sku: u64,
    /// Orders this worker created for add-item (the first one, then one
    /// each time the previous one was full or unusable).
    pub(crate) orders_created: u64,
}

impl WorkerState {
    pub(crate) fn new(worker: u32, run: &str) -> Self {
        WorkerState {
            worker,
            customer: format!("loadgen-{run}-w{worker}"),
            order: None,
            next_sku: 0,
            orders_created: 0,
        }
    }

    fn sku(&mut self) -> String {
        self.next_sku += 1;
        format!("LG-{}-{}", self.worker, self.next_sku)
    }

    /// Makes sure the worker has an order with room for one more line.
    /// The creating request is not part of the add-item measurements.
    pub(crate) async fn ensure_order(&mut self, api: &Api) -> Result<(), Failure> {
        if matches!(&self.order, Some((_, lines)) if *lines < MAX_LINES) {
            return Ok(());
        }
        let sku = self.sku();
        let ack = api.create_order(&self.customer, &sku).await?;
        self.order = Some((ack.order_id, 1));
        self.orders_created += 1;
        Ok(())
    }

    /// One scenario command; the caller times it.
    pub(crate) async fn command(&mut self, api: &Api, scenario: Scenario) -> Result<Ack, Failure> {
        let sku = self.sku();
        match scenario {
            Scenario::CreateOrder => api.create_order(&self.customer, &sku).await,
            Scenario::AddItem => {
                let (order_id, _) = self.order.as_ref().expect("ensure_order ran");
                let result = api.add_item(order_id, &sku).await;
                match &result {
                    Ok(_) => {
                        if let Some((_, lines)) = self.order.as_mut() {
                            *lines += 1;
                        }
                    }
                    // The order cannot take this line (full, wrong state, gone):
                    // start over with a fresh order next time.
                    Err(f) if f.key == "409" || f.key == "404" => self.order = None,
                    Err(_) => {}
                }
                result
            }
        }
    }
}
