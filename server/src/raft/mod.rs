//! openraft on sett-engine.
