//! The routing rules of docs/protocol.md §6 and §8.1, driven through the hub
//! alone: no socket, no database, no clock, no runtime.
