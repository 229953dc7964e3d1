//! The reference data of Acme Sports, the example brand: 56 stores in two regions across
//! every channel, and a catalog of 2,400 SKUs. Fixed (not seeded), so `examples/` holds it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rust_decimal::Decimal;

use crate::event::Channel;
use crate::reference::{ProductRecord, StoreRecord};

pub const CATALOG_SIZE: usize = 2_400;

struct Region {
    code: &'static str,
    prefix: &'static str,
    timezone: &'static str,
    currency: &'static str,
    /// Physical store cities with their country.
    cities: [(&'static str, &'static str); 20],
    warehouses: [(&'static str, &'static str); 2],
    marketplaces: [&'static str; 3],
    web_shops: [(&'static str, &'static str); 3],
}

const REGIONS: [Region; 2] = [
    Region {
        code: "eu-central",
        prefix: "EUC",
        timezone: "Europe/Berlin",
        currency: "EUR",
        cities: [
            ("Berlin", "DE"),
            ("Hamburg", "DE"),
            ("Munich", "DE"),
            ("Cologne", "DE"),
            ("Frankfurt", "DE"),
            ("Stuttgart", "DE"),
            ("Dusseldorf", "DE"),
            ("Leipzig", "DE"),
            ("Vienna", "AT"),
            ("Graz", "AT"),
            ("Amsterdam", "NL"),
            ("Rotterdam", "NL"),
            ("Paris", "FR"),
            ("Lyon", "FR"),
            ("Milan", "IT"),
            ("Rome", "IT"),
            ("Madrid", "ES"),
            ("Barcelona", "ES"),
            ("Brussels", "BE"),
            ("Antwerp", "BE"),
        ],
        warehouses: [("Kassel", "DE"), ("Venlo", "NL")],
        marketplaces: ["Amazon DE", "Zalando", "Otto"],
        web_shops: [("acme-sports.de", "DE"), ("acme-sports.fr", "FR"), ("acme-sports.eu", "NL")],
    },
    Region {
        code: "us-east",
        prefix: "USE",
        timezone: "America/New_York",
        currency: "USD",
        cities: [
            ("New York", "US"),
            ("Brooklyn", "US"),
            ("Boston", "US"),
            ("Philadelphia", "US"),
            ("Pittsburgh", "US"),
            ("Baltimore", "US"),
            ("Washington", "US"),
            ("Atlanta", "US"),
            ("Miami", "US"),
            ("Orlando", "US"),
            ("Tampa", "US"),
            ("Charlotte", "US"),
            ("Raleigh", "US"),
            ("Richmond", "US"),
            ("Newark", "US"),
            ("Hartford", "US"),
            ("Providence", "US"),
            ("Buffalo", "US"),
            ("Albany", "US"),
            ("Columbus", "US"),
        ],
        warehouses: [("Allentown", "US"), ("Savannah", "US")],
        marketplaces: ["Amazon US", "Walmart Marketplace", "eBay"],
        web_shops: [("acme-sports.com", "US"), ("acme-sports.com/outlet", "US"), ("acme-sports app", "US")],
    },
];

const FORMATS: [&str; 4] = ["flagship", "standard", "standard", "outlet"];

/// The 56 stores of the brand.
pub fn stores() -> Vec<StoreRecord> {
    let mut stores = Vec::new();
    for region in &REGIONS {
        let store = |id: String, name: String, channel, format: &str, city: &str, country: &str| StoreRecord {
            store_id: id,
            name,
            region: region.code.to_string(),
            channel,
            format: format.to_string(),
            city: city.to_string(),
            country: country.to_string(),
            timezone: region.timezone.to_string(),
            currency: region.currency.to_string(),
        };
        for (i, (city, country)) in region.cities.iter().enumerate() {
            let format = FORMATS[if i < 2 { 0 } else { 1 + i % 3 }];
            stores.push(store(
                format!("{}-P{:02}", region.prefix, i + 1),
                format!("Acme Sports {city}"),
                Channel::Physical,
                format,
                city,
                country,
            ));
        }
        for (i, (site, country)) in region.web_shops.iter().enumerate() {
            stores.push(store(
                format!("{}-O{:02}", region.prefix, i + 1),
                site.to_string(),
                Channel::Online,
                "web",
                "",
                country,
            ));
        }
        for (i, (city, country)) in region.warehouses.iter().enumerate() {
            stores.push(store(
                format!("{}-W{:02}", region.prefix, i + 1),
                format!("{city} DC"),
                Channel::Warehouse,
                "distribution-center",
                city,
                country,
            ));
        }
        for (i, market) in region.marketplaces.iter().enumerate() {
            stores.push(store(
                format!("{}-M{:02}", region.prefix, i + 1),
                market.to_string(),
                Channel::Marketplace,
                "marketplace",
                "",
                "",
            ));
        }
    }
    stores
}

/// Category, its share of the catalog, and its products with a price range (EUR).
/// A product line: name and price range in whole EUR.
type Line = (&'static str, u32, u32);

const CATEGORIES: [(&str, u32, &[Line]); 10] = [
    (
        "running",
        18,
        &[
            ("Road Running Shoe", 70, 180),
            ("Trail Running Shoe", 90, 200),
            ("Running Jacket", 50, 150),
            ("Running Tights", 30, 80),
            ("GPS Running Watch", 150, 500),
            ("Running Socks 3-Pack", 10, 20),
        ],
    ),
    (
        "football",
        14,
        &[
            ("Football Boot FG", 50, 280),
            ("Match Ball", 20, 150),
            ("Goalkeeper Gloves", 25, 120),
            ("Club Jersey", 60, 100),
            ("Shin Guards", 10, 40),
        ],
    ),
    (
        "cycling",
        10,
        &[
            ("Road Helmet", 60, 250),
            ("Cycling Jersey", 40, 130),
            ("Bib Shorts", 60, 180),
            ("Bike Light Set", 20, 90),
            ("Cycling Gloves", 15, 50),
        ],
    ),
    (
        "tennis",
        8,
        &[
            ("Tennis Racket", 80, 260),
            ("Tennis Balls 4-Tube", 6, 12),
            ("Tennis Shoe", 70, 160),
            ("Racket Bag", 40, 120),
        ],
    ),
    (
        "outdoor",
        14,
        &[
            ("Hiking Boot", 100, 260),
            ("Rain Shell Jacket", 90, 400),
            ("Daypack 25L", 40, 130),
            ("Trekking Poles", 30, 150),
            ("Fleece Midlayer", 40, 120),
            ("Headlamp", 20, 80),
        ],
    ),
    (
        "fitness",
        12,
        &[
            ("Yoga Mat", 20, 90),
            ("Dumbbell Set", 30, 200),
            ("Resistance Bands", 10, 40),
            ("Training Shoe", 60, 140),
            ("Kettlebell 12kg", 30, 70),
        ],
    ),
    ("swimming", 6, &[("Swim Goggles", 10, 50), ("Swimsuit", 30, 120), ("Swim Cap", 5, 20), ("Wetsuit", 150, 600)]),
    (
        "winter-sports",
        8,
        &[
            ("All-Mountain Ski", 300, 800),
            ("Ski Boot", 200, 550),
            ("Ski Helmet", 60, 250),
            ("Ski Goggles", 40, 200),
            ("Snowboard", 250, 650),
        ],
    ),
    ("basketball", 6, &[("Basketball Shoe", 80, 220), ("Indoor Basketball", 25, 90), ("Basketball Shorts", 25, 60)]),
    ("team-sports", 4, &[("Hockey Stick", 40, 300), ("Volleyball", 20, 70), ("Training Cones Set", 10, 30)]),
];

const BRANDS: [&str; 10] = [
    "Stridex",
    "Kinetiq",
    "Alpenmark",
    "Velora",
    "Northpeak",
    "Aquaris",
    "Courtline",
    "Trailborn",
    "Apex Motion",
    "Acme Pro",
];
const EDITIONS: [&str; 8] = ["", " Pro", " Lite", " Elite", " 2", " GTX", " Evo", " Junior"];

/// The 2,400 SKUs of the catalog.
pub fn catalog() -> Vec<ProductRecord> {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed_ac4e);
    let total_weight: u32 = CATEGORIES.iter().map(|c| c.1).sum();
    let mut products = Vec::with_capacity(CATALOG_SIZE);
    for (category, weight, items) in CATEGORIES {
        let count = if category == CATEGORIES[CATEGORIES.len() - 1].0 {
            CATALOG_SIZE - products.len()
        } else {
            CATALOG_SIZE * weight as usize / total_weight as usize
        };
        for n in 0..count {
            let (item, low, high) = items[n % items.len()];
            let brand = BRANDS[rng.random_range(0..BRANDS.len())];
            let edition = EDITIONS[rng.random_range(0..EDITIONS.len())];
            let whole = rng.random_range(low..=high);
            let cents = [99u32, 95, 90, 0][rng.random_range(0..4)];
            let price = Decimal::new(i64::from(whole) * 100 + i64::from(cents), 2);
            let band = if whole < 40 {
                "budget"
            } else if whole < 120 {
                "mid"
            } else {
                "premium"
            };
            products.push(ProductRecord {
                sku_id: format!("SKU-{:06}", products.len() + 1),
                name: format!("{brand} {item}{edition}"),
                category: category.to_string(),
                brand: brand.to_string(),
                price_band: band.to_string(),
                list_price: price.to_string(),
            });
        }
    }
    products
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn brand_has_the_promised_shape() {
        let stores = stores();
        assert_eq!(stores.len(), 56);
        let regions: HashSet<_> = stores.iter().map(|s| s.region.as_str()).collect();
        assert_eq!(regions.len(), 2);
        let count = |channel| stores.iter().filter(|s| s.channel == channel).count();
        assert_eq!(
            [Channel::Physical, Channel::Online, Channel::Warehouse, Channel::Marketplace].map(count),
            [40, 6, 4, 6]
        );
        let ids: HashSet<_> = stores.iter().map(|s| s.store_id.as_str()).collect();
        assert_eq!(ids.len(), 56);
        let catalog = catalog();
        assert_eq!(catalog.len(), CATALOG_SIZE);
        let skus: HashSet<_> = catalog.iter().map(|p| p.sku_id.as_str()).collect();
        assert_eq!(skus.len(), CATALOG_SIZE);
        assert_eq!(catalog.iter().map(|p| p.category.as_str()).collect::<HashSet<_>>().len(), 10);
        assert!(catalog.iter().all(|p| p.list_price.parse::<Decimal>().is_ok()));
    }
}
