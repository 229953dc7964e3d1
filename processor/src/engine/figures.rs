//! The figures of one window and group: units, revenue and transactions, in exact decimals.

use rust_decimal::Decimal;

use crate::event::{Event, EventType};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Figures {
    pub units_sold: i64,
    pub units_returned: i64,
    pub gross_revenue: Decimal,
    pub returns_revenue: Decimal,
    pub transactions: u64,
}

impl Figures {
    /// `units` at `price`: the integer product of the mantissa when it fits (as exact as
    /// `Decimal` multiplication, which gives the same value and scale), else `Decimal`'s.
    fn revenue(price: Decimal, units: i64) -> Decimal {
        price
            .mantissa()
            .checked_mul(i128::from(units))
            .and_then(|mantissa| Decimal::try_from_i128_with_scale(mantissa, price.scale()).ok())
            .unwrap_or_else(|| price.checked_mul(Decimal::from(units)).unwrap_or(Decimal::MAX))
    }

    /// The contribution of one SALE or RETURN; `None` for events that move no money.
    pub fn of_event(event: &Event<'_>) -> Option<Figures> {
        let price = event.unit_price?;
        match event.event_type {
            EventType::Sale => {
                let units = event.quantity_delta.saturating_neg();
                Some(Figures {
                    units_sold: units,
                    gross_revenue: Figures::revenue(price, units),
                    transactions: 1,
                    ..Default::default()
                })
            }
            EventType::Return => {
                let units = event.quantity_delta;
                Some(Figures {
                    units_returned: units,
                    returns_revenue: Figures::revenue(price, units),
                    ..Default::default()
                })
            }
            _ => None,
        }
    }

    /// Sums saturate instead of overflowing: out of reach of events within the schema's
    /// bounds, and never a panic whatever arrives.
    pub fn add(&mut self, other: &Figures) {
        self.units_sold = self.units_sold.saturating_add(other.units_sold);
        self.units_returned = self.units_returned.saturating_add(other.units_returned);
        self.transactions = self.transactions.saturating_add(other.transactions);
        // A sale moves no returns revenue and a return no gross revenue: skip adding zero.
        if !other.gross_revenue.is_zero() {
            self.gross_revenue = self.gross_revenue.checked_add(other.gross_revenue).unwrap_or(Decimal::MAX);
        }
        if !other.returns_revenue.is_zero() {
            self.returns_revenue = self.returns_revenue.checked_add(other.returns_revenue).unwrap_or(Decimal::MAX);
        }
    }

    pub fn net_revenue(&self) -> Decimal {
        self.gross_revenue.checked_sub(self.returns_revenue).unwrap_or(Decimal::MIN)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The integer product equals `Decimal` multiplication, value and scale.
        #[test]
        fn revenue_is_decimal_multiplication(mantissa in 0i64..1_000_000_000_000, scale in 0u32..12, units in 1i64..100_000) {
            let price = Decimal::new(mantissa, scale);
            let fast = Figures::revenue(price, units);
            let slow = price * Decimal::from(units);
            prop_assert_eq!((fast, fast.scale()), (slow, slow.scale()));
        }
    }

    #[test]
    fn revenue_beyond_the_integer_range_is_still_exact() {
        let price = Decimal::MAX / Decimal::from(4);
        assert_eq!(Figures::revenue(price, 3), price * Decimal::from(3));
    }
}
