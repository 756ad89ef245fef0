//! Client library for sett. Empty until the replicated server lands.
