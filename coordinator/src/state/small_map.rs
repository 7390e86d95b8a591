//! A map for a handful of entries (per region of a check): a vector kept in
//! key order, sized exactly, its keys region names shared by every map
//! ([`Name`]). A `BTreeMap` allocates room for eleven entries in its first
//! node whatever it holds, and every `String` key its own copy of the
//! name — with tens of thousands of checks, each with several per-region
//! maps, that was most of the state's memory. Same order, same API where
//! used, same serialised form (a map).

use std::borrow::Borrow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A key of a [`SmallMap`]: a name held once in the process however many
/// maps carry it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(Arc<str>);

/// Names shared so far. Keys are region names, a handful; past this many
/// a new name is no longer shared (so that no input can grow the set
/// without bound).
const SHARED_NAMES: usize = 4096;

static NAMES: Mutex<BTreeSet<Arc<str>>> = Mutex::new(BTreeSet::new());

impl Name {
    /// `name`, the process's shared copy of it.
    pub fn new(name: &str) -> Name {
        let Ok(mut names) = NAMES.lock() else {
            return Name(Arc::from(name));
        };
        if let Some(shared) = names.get(name) {
            return Name(shared.clone());
        }
        let new: Arc<str> = Arc::from(name);
        if names.len() < SHARED_NAMES {
            names.insert(new.clone());
        }
        Name(new)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl Serialize for Name {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A small map with [`Name`] keys, in key order.
#[derive(Clone, PartialEq, Eq)]
pub struct SmallMap<V> {
    entries: Vec<(Name, V)>,
}

impl<V> Default for SmallMap<V> {
    fn default() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }
}

impl<V: fmt::Debug> fmt::Debug for SmallMap<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V> SmallMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        SmallMap::default()
    }

    fn find<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> Result<usize, usize> {
        self.entries
            .binary_search_by(|(k, _)| k.as_str().cmp(key.borrow()))
    }

    /// Entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The value under `key`.
    pub fn get<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> Option<&V> {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// The value under `key`, to change.
    pub fn get_mut<Q: Borrow<str> + ?Sized>(&mut self, key: &Q) -> Option<&mut V> {
        self.find(key).ok().map(|i| &mut self.entries[i].1)
    }

    /// Is there a value under `key`?
    pub fn contains_key<Q: Borrow<str> + ?Sized>(&self, key: &Q) -> bool {
        self.find(key).is_ok()
    }

    /// Puts `value` under `key`; returns the one it replaced.
    pub fn insert(&mut self, key: impl AsRef<str>, value: V) -> Option<V> {
        match self.find(key.as_ref()) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.put(i, key.as_ref(), value);
                None
            }
        }
    }

    /// Adds an entry at `i`, growing the vector by exactly one.
    fn put(&mut self, i: usize, key: &str, value: V) {
        self.entries.reserve_exact(1);
        self.entries.insert(i, (Name::new(key), value));
    }

    /// Takes the value under `key` out.
    pub fn remove<Q: Borrow<str> + ?Sized>(&mut self, key: &Q) -> Option<V> {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }

    /// The value under `key`, inserted first when absent.
    pub fn entry<K: AsRef<str>>(&mut self, key: K) -> Entry<'_, V, K> {
        Entry { map: self, key }
    }

    /// Keeps the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&Name, &mut V) -> bool) {
        self.entries.retain_mut(|(k, v)| keep(k, v));
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&Name, &V)> + ExactSizeIterator {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    /// Entries in key order, values to change.
    pub fn iter_mut(
        &mut self,
    ) -> impl DoubleEndedIterator<Item = (&Name, &mut V)> + ExactSizeIterator {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &Name> + ExactSizeIterator {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Values in key order.
    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Values in key order, to change.
    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + ExactSizeIterator {
        self.entries.iter_mut().map(|(_, v)| v)
    }
}

/// A place in a [`SmallMap`] ([`SmallMap::entry`]).
#[derive(Debug)]
pub struct Entry<'a, V, K> {
    map: &'a mut SmallMap<V>,
    key: K,
}

impl<'a, V, K: AsRef<str>> Entry<'a, V, K> {
    /// The value, `make()` put there first when absent.
    pub fn or_insert_with(self, make: impl FnOnce() -> V) -> &'a mut V {
        let i = match self.map.find(self.key.as_ref()) {
            Ok(i) => i,
            Err(i) => {
                self.map.put(i, self.key.as_ref(), make());
                i
            }
        };
        &mut self.map.entries[i].1
    }

    /// The value, `value` put there first when absent.
    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    /// The value, a default one put there first when absent.
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

impl<V, Q: Borrow<str> + ?Sized> std::ops::Index<&Q> for SmallMap<V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry {:?} in the map", key.borrow()),
        }
    }
}

impl<V, K: AsRef<str>> FromIterator<(K, V)> for SmallMap<V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SmallMap::new();
        map.extend(iter);
        map
    }
}

impl<V, K: AsRef<str>> Extend<(K, V)> for SmallMap<V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<'a, V> IntoIterator for &'a SmallMap<V> {
    type Item = (&'a Name, &'a V);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Name, V)>, fn(&'a (Name, V)) -> (&'a Name, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<V> IntoIterator for SmallMap<V> {
    type Item = (Name, V);
    type IntoIter = std::vec::IntoIter<(Name, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<V: Serialize> Serialize for SmallMap<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for SmallMap<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<V>(std::marker::PhantomData<V>);

        impl<'de, V: Deserialize<'de>> Visitor<'de> for Entries<V> {
            type Value = SmallMap<V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = SmallMap::new();
                while let Some((k, v)) = access.next_entry::<String, V>()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn it_behaves_and_serialises_like_a_btreemap() {
        let mut small = SmallMap::new();
        let mut big = BTreeMap::new();
        for (i, key) in ["us", "eu", "ru", "eu", "ap", "us"].iter().enumerate() {
            assert_eq!(small.insert(*key, i), big.insert((*key).to_owned(), i));
        }
        *small.entry("za").or_default() += 7;
        *big.entry("za".to_owned()).or_default() += 7;
        *small.entry("eu").or_insert(100) += 1;
        *big.entry("eu".to_owned()).or_insert(100) += 1;
        assert_eq!(small.remove("ru"), big.remove("ru"));
        assert_eq!(small.remove("nowhere"), None);
        small.retain(|_, v| *v != 0);
        big.retain(|_, v| *v != 0);
        assert_eq!(
            small
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect::<Vec<_>>(),
            big.iter().map(|(k, v)| (k.as_str(), v)).collect::<Vec<_>>()
        );
        assert_eq!(
            (small.len(), small["za"], small.get("us")),
            (big.len(), 7, Some(&5))
        );
        let json = serde_json::to_string(&small).unwrap_or_default();
        assert_eq!(json, serde_json::to_string(&big).unwrap_or_default());
        // Read from any key order, like a BTreeMap.
        let read: SmallMap<u32> = match serde_json::from_str(r#"{"b": 2, "a": 1, "c": 3}"#) {
            Ok(m) => m,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(read.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn keys_are_shared_and_vectors_sized_exactly() {
        let mut one = SmallMap::new();
        let mut two: SmallMap<u8> =
            serde_json::from_str(r#"{"ru": 1, "eu": 2}"#).unwrap_or_default();
        for key in ["us", "ru", "eu"] {
            one.insert(key, 0u8);
        }
        two.insert(String::from("us"), 3);
        for (a, b) in one.keys().zip(two.keys()) {
            assert!(Arc::ptr_eq(&a.0, &b.0), "{a} is held twice");
        }
        assert_eq!((one.entries.capacity(), two.entries.capacity()), (3, 3));
    }
}
