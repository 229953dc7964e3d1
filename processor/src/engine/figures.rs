//! The figures of one window and group: units, revenue and transactions, in exact decimals.

use rust_decimal::Decimal;

use crate::event::{Event, EventType};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Figures {
    pub units_sold: i64,
    pub units_returned: i64,
    pub gross_revenue: Decimal,
    pub returns_revenue: Decimal,
    pub transactions: u64,
}

impl Figures {
    /// The contribution of one SALE or RETURN; `None` for events that move no money.
    pub fn of_event(event: &Event<'_>) -> Option<Figures> {
        let price = event.unit_price?;
        match event.event_type {
            EventType::Sale => {
                let units = -event.quantity_delta;
                Some(Figures {
                    units_sold: units,
                    gross_revenue: price * Decimal::from(units),
                    transactions: 1,
                    ..Default::default()
                })
            }
            EventType::Return => {
                let units = event.quantity_delta;
                Some(Figures {
                    units_returned: units,
                    returns_revenue: price * Decimal::from(units),
                    ..Default::default()
                })
            }
            _ => None,
        }
    }

    pub fn add(&mut self, other: &Figures) {
        self.units_sold += other.units_sold;
        self.units_returned += other.units_returned;
        self.transactions += other.transactions;
        // A sale moves no returns revenue and a return no gross revenue: skip adding zero.
        if !other.gross_revenue.is_zero() {
            self.gross_revenue += other.gross_revenue;
        }
        if !other.returns_revenue.is_zero() {
            self.returns_revenue += other.returns_revenue;
        }
    }

    pub fn net_revenue(&self) -> Decimal {
        self.gross_revenue - self.returns_revenue
    }
}
