//! The HTTP plumbing every route shares, knowing no path: who may call
//! (`access`), how requests are read (`extract`), how refused submissions
//! are counted (`rejections`), and how a route is registered with all of
//! these (`resource`).

pub mod access;
pub mod extract;
pub mod rejections;
pub mod resource;
