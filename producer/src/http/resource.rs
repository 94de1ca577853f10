//! Registering a resource: its path, its declared [`Access`] and its
//! methods, each with its handler. The only way a route is served, so no
//! route exists without a declared access.
//!
//! The access guard is attached here to each method's route, and per
//! [`Access::for_other_methods`] to the 405 answered for any other method,
//! whose `Allow` lists the methods registered. Per resource rather than per
//! scope: sibling actix scopes with the same (say empty) prefix do not fall
//! through to each other (actix-web#2295), so a "public scope" beside an
//! "API scope" would hide one of them.

use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder, Route};

use crate::error::ApiError;

use super::access::{guarded, Access};
use super::rejections::count_rejections;

/// One registered resource, as the route table lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The path pattern (`{id}` for a segment).
    pub path: &'static str,
    /// The methods it serves, in registration order.
    pub methods: Vec<Method>,
    /// What a caller needs.
    pub access: Access,
    /// Whether the OpenAPI document describes it (the dashboard's assets
    /// and its trailing-slash redirect are not API operations).
    pub documented: bool,
}

/// A resource being registered; see the module docs.
pub struct Resource {
    entry: Entry,
    inner: actix_web::Resource,
}

impl Resource {
    /// A resource at `path` that requires `access` of its callers.
    pub fn new(path: &'static str, access: Access) -> Self {
        Self {
            entry: Entry {
                path,
                methods: Vec::new(),
                access,
                documented: true,
            },
            inner: web::resource(path),
        }
    }

    /// Serve `GET` with `handler`.
    pub fn get<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::GET, web::method(Method::GET).to(handler))
    }

    /// Serve `POST` with `handler`.
    pub fn post<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::POST, web::method(Method::POST).to(handler))
    }

    /// Serve `DELETE` with `handler`.
    pub fn delete<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        self.method(Method::DELETE, web::method(Method::DELETE).to(handler))
    }

    /// Serve `POST` with `handler`, a message submission: its refusals are
    /// counted (see `rejections`).
    pub fn submit<F, Args>(self, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::method(Method::POST)
            .to(handler)
            .wrap(from_fn(count_rejections));
        self.method(Method::POST, route)
    }

    /// Data for this resource's handlers (such as its own body limit).
    pub fn app_data<U: 'static>(mut self, data: U) -> Self {
        self.inner = self.inner.app_data(data);
        self
    }

    /// Not an operation of the OpenAPI document.
    pub fn undocumented(mut self) -> Self {
        self.entry.documented = false;
        self
    }

    /// What this resource is.
    pub fn entry(&self) -> &Entry {
        &self.entry
    }

    /// Serve it, with the 405 for every other method.
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        let allow: Vec<&str> = self.entry.methods.iter().map(Method::as_str).collect();
        let allow = allow.join(", ");
        let others = web::to(move || {
            let allow = allow.clone();
            async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed(allow)) }
        });
        let others = guarded(others, self.entry.access.for_other_methods());
        cfg.service(self.inner.default_service(others));
    }

    fn method(mut self, method: Method, route: Route) -> Self {
        self.entry.methods.push(method);
        self.inner = self.inner.route(guarded(route, self.entry.access));
        self
    }
}

/// The answer for every path no resource has: a JSON 404, behind `access`.
pub fn unknown_paths(access: Access) -> Route {
    let route =
        web::to(|req: HttpRequest| async move { Err::<HttpResponse, _>(ApiError::no_route(&req)) });
    guarded(route, access)
}
