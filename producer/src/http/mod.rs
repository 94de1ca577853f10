//! The HTTP plumbing every route shares, knowing no path: who may call
//! (`access`), how requests are read (`extract`), how long the first
//! request's head may take (`head`, around each connection), the headers
//! every answer carries (`headers`), how refused submissions are counted
//! (`rejections`), and how a route is registered with all of these
//! (`resource`).

pub mod access;
pub mod extract;
pub mod head;
pub mod headers;
pub mod rejections;
pub mod resource;
