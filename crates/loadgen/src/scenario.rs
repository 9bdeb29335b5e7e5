//! What one request does in each scenario, and the per-worker state that
//! makes it possible: the worker's customer, its SKU counter, for add-item
//! the order it adds lines to (replaced when full or unusable), and for mixed
//! the order going through its life and the step it is at.

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
    /// Mixed: the next step of the cycle, and the order (with the consistency
    /// token of its last command) that the steps after `Create` work on.
    step: Step,
    cycle_order: Option<(String, Option<String>)>,
}

/// One request of the mixed scenario's cycle, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    Create,
    AddItem,
    Approve,
    Ship,
    Read,
}

impl Step {
    /// The step after this one when it succeeded; any failure starts over at `Create`.
    pub(crate) fn next(self) -> Step {
        match self {
            Step::Create => Step::AddItem,
            Step::AddItem => Step::Approve,
            Step::Approve => Step::Ship,
            Step::Ship => Step::Read,
            Step::Read => Step::Create,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Step::Create => "create",
            Step::AddItem => "add-item",
            Step::Approve => "approve",
            Step::Ship => "ship",
            Step::Read => "read",
        }
    }

    pub(crate) fn is_command(self) -> bool {
        self != Step::Read
    }
}

impl WorkerState {
    pub(crate) fn new(worker: u32, run: &str) -> Self {
        WorkerState {
            worker,
            customer: format!("loadgen-{run}-w{worker}"),
            order: None,
            next_sku: 0,
            orders_created: 0,
            step: Step::Create,
            cycle_order: None,
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

    /// What the next request of `scenario` will be (mixed has five kinds).
    pub(crate) fn next_step(&self, scenario: Scenario) -> Step {
        match scenario {
            Scenario::CreateOrder => Step::Create,
            Scenario::AddItem => Step::AddItem,
            Scenario::Mixed => self.step,
        }
    }

    /// One step of the mixed cycle on the worker's current order.
    async fn mixed(&mut self, api: &Api, sku: &str) -> Result<Ack, Failure> {
        let step = self.step;
        let result = match (step, &self.cycle_order) {
            (Step::Create, _) | (_, None) => api.create_order(&self.customer, sku).await,
            (Step::AddItem, Some((id, _))) => api.add_item(id, sku).await,
            (Step::Approve, Some((id, _))) => api.approve(id).await,
            (Step::Ship, Some((id, _))) => api.ship(id).await,
            (Step::Read, Some((id, token))) => api.get_order(id, token.as_deref()).await,
        };
        match &result {
            Ok(ack) => {
                if step.is_command() {
                    self.cycle_order = Some((ack.order_id.clone(), ack.token.clone()));
                }
                self.step = step.next();
            }
            Err(_) => {
                self.cycle_order = None;
                self.step = Step::Create;
            }
        }
        result
    }

    /// One scenario request; the caller times it.
    pub(crate) async fn command(&mut self, api: &Api, scenario: Scenario) -> Result<Ack, Failure> {
        let sku = self.sku();
        match scenario {
            Scenario::Mixed => self.mixed(api, &sku).await,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mixed_cycle_is_create_add_approve_ship_read() {
        let mut step = Step::Create;
        let mut seen = Vec::new();
        for _ in 0..6 {
            seen.push(step.name());
            step = step.next();
        }
        assert_eq!(
            seen,
            ["create", "add-item", "approve", "ship", "read", "create"]
        );
        assert!(!Step::Read.is_command());
        assert!(Step::Ship.is_command());
    }

    #[test]
    fn each_scenario_starts_with_its_own_request() {
        let state = WorkerState::new(0, "t");
        assert_eq!(state.next_step(Scenario::CreateOrder), Step::Create);
        assert_eq!(state.next_step(Scenario::AddItem), Step::AddItem);
        assert_eq!(state.next_step(Scenario::Mixed), Step::Create);
    }
}
