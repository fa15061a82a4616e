//! Engines behind one interface.
