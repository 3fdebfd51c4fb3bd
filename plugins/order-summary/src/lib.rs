//! A JSON-typed function: parse an order, total it, emit a summary.
//!
//! Input:  `{"id":"o-1","customer":"ada","lines":[{"sku":"a","quantity":2,"unit_price":1.5}]}`
//! Output: `{"id":"o-1","customer":"ada","items":2,"total":3.0}`

use pfn_abi::{
    Json,
    serde::{Deserialize, Serialize},
};

/// One line of an order.
#[derive(Debug, Deserialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: f64,
}

/// An incoming order.
#[derive(Debug, Deserialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct Order {
    pub id: String,
    pub customer: String,
    pub lines: Vec<OrderLine>,
}

/// What the function emits for each order.
#[derive(Debug, PartialEq, Serialize)]
#[serde(crate = "pfn_abi::serde")]
pub struct OrderSummary {
    pub id: String,
    pub customer: String,
    pub items: u32,
    pub total: f64,
}

/// Totals an order. An order without lines is an error (it is dead-lettered).
#[pfn_abi::function]
pub fn order_summary(order: Json<Order>) -> Result<Json<OrderSummary>, String> {
    let Json(order) = order;
    if order.lines.is_empty() {
        return Err(format!("order {} has no lines", order.id));
    }
    let items = order.lines.iter().map(|line| line.quantity).sum();
    let total = order.lines.iter().map(|line| f64::from(line.quantity) * line.unit_price).sum();
    Ok(Json(OrderSummary { id: order.id, customer: order.customer, items, total }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_the_lines() {
        let order = Order {
            id: "o-1".into(),
            customer: "ada".into(),
            lines: vec![
                OrderLine { sku: "a".into(), quantity: 2, unit_price: 1.5 },
                OrderLine { sku: "b".into(), quantity: 1, unit_price: 4.0 },
            ],
        };
        let Json(summary) = order_summary(Json(order)).expect("order has lines");
        assert_eq!(summary, OrderSummary { id: "o-1".into(), customer: "ada".into(), items: 3, total: 7.0 });
    }

    #[test]
    fn refuses_an_empty_order() {
        let order = Order { id: "o-2".into(), customer: "bo".into(), lines: vec![] };
        assert!(order_summary(Json(order)).is_err());
    }
}
