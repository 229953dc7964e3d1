//! String interning: ids of stores, SKUs and labels become dense `u32`s, so the hot path
//! hashes each string once and every table after that is keyed by integers.

use std::sync::Arc;

use rustc_hash::FxHashMap;

/// Marks a group-key slot that the window does not group by.
pub const NONE: u32 = u32::MAX;

#[derive(Default, Debug)]
pub struct Interner {
    ids: FxHashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

impl Interner {
    pub fn intern(&mut self, text: &str) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = u32::try_from(self.names.len()).unwrap_or(NONE - 1);
        let name: Arc<str> = Arc::from(text);
        self.names.push(name.clone());
        self.ids.insert(name, id);
        id
    }

    pub fn get(&self, text: &str) -> Option<u32> {
        self.ids.get(text).copied()
    }

    pub fn name(&self, id: u32) -> &Arc<str> {
        &self.names[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_text_same_id() {
        let mut i = Interner::default();
        let a = i.intern("S1");
        let b = i.intern("S2");
        assert_eq!(i.intern("S1"), a);
        assert_ne!(a, b);
        assert_eq!(&**i.name(b), "S2");
        assert_eq!(i.get("S3"), None);
    }
}
