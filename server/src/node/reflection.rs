//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) on the
//! client URLs, so that `grpcurl` and similar tools can list and call the
//! services without `.proto` files.
//!
//! Advertised: the etcd v3 services, the native `sett.v1.Sett`, the health
//! service and reflection itself; their descriptors come from
//! [`sett_proto::FILE_DESCRIPTOR_SET`] and tonic-health's. The Raft
//! transport (`sett.raft.v1`, served only on the peer URLs) is left out.

use tonic::service::Routes;

/// The services listed by reflection.
pub const SERVICES: &[&str] = &[
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
    "sett.v1.Sett",
    "grpc.health.v1.Health",
];

/// `routes` plus both versions of the reflection service.
pub(crate) fn add_services(routes: Routes) -> Routes {
    let configure = |own: &'static str| {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(sett_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(own);
        for name in SERVICES {
            b = b.with_service_name(*name);
        }
        b
    };
    let v1 = configure("grpc.reflection.v1.ServerReflection")
        .build_v1()
        .expect("the compiled-in descriptor sets are valid");
    let v1alpha = configure("grpc.reflection.v1alpha.ServerReflection")
        .build_v1alpha()
        .expect("the compiled-in descriptor sets are valid");
    routes.add_service(v1).add_service(v1alpha)
}

#[cfg(test)]
mod tests {
    #[test]
    fn reflection_builds_from_the_descriptors() {
        let _ = super::add_services(tonic::service::Routes::default());
    }
}
