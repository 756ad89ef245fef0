//! Checks the compiled descriptor set: every etcd name, number and type
//! against a golden list taken from etcd's sources, the 39 RPCs of etcd 3.4,
//! and the method paths of sett's own services.

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, EnumDescriptorProto, FileDescriptorSet};

fn descriptor_set() -> FileDescriptorSet {
    FileDescriptorSet::decode(sett_proto::FILE_DESCRIPTOR_SET).expect("FILE_DESCRIPTOR_SET decodes")
}

fn scalar_name(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
        Type::Group | Type::Message | Type::Enum => unreachable!("not a scalar"),
    }
}

fn render_enum(scope: &str, e: &EnumDescriptorProto, out: &mut Vec<String>) {
    let name = format!("{scope}.{}", e.name());
    out.push(format!("enum {name}"));
    for v in &e.value {
        out.push(format!("enum {name} {} = {}", v.name(), v.number()));
    }
}

fn render_message(scope: &str, m: &DescriptorProto, out: &mut Vec<String>) {
    let name = format!("{scope}.{}", m.name());
    out.push(format!("message {name}"));
    for f in &m.field {
        let ty = match f.r#type() {
            Type::Message | Type::Enum => f.type_name().rsplit('.').next().unwrap().to_owned(),
            t => scalar_name(t).to_owned(),
        };
        let label = if f.label() == Label::Repeated {
            "repeated "
        } else {
            ""
        };
        let mut line = format!("field {name} {} = {} {label}{ty}", f.name(), f.number());
        if let Some(i) = f.oneof_index {
            line.push_str(&format!(" oneof {}", m.oneof_decl[i as usize].name()));
        }
        out.push(line);
    }
    for e in &m.enum_type {
        render_enum(&name, e, out);
    }
    for nested in &m.nested_type {
        render_message(&name, nested, out);
    }
}

/// Renders the given packages in the golden file's line format, sorted.
fn render(packages: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for file in descriptor_set().file {
        let package = file.package().to_owned();
        if !packages.contains(&package.as_str()) {
            continue;
        }
        for m in &file.message_type {
            render_message(&package, m, &mut out);
        }
        for e in &file.enum_type {
            render_enum(&package, e, &mut out);
        }
        for s in &file.service {
            out.push(format!("service {package}.{}", s.name()));
            for m in &s.method {
                let stream = |b: bool| if b { "stream " } else { "" };
                let short = |t: &str| t.rsplit('.').next().unwrap().to_owned();
                out.push(format!(
                    "rpc {package}.{}/{} {}{} -> {}{}",
                    s.name(),
                    m.name(),
                    stream(m.client_streaming()),
                    short(m.input_type()),
                    stream(m.server_streaming()),
                    short(m.output_type()),
                ));
            }
        }
    }
    out.sort();
    out
}

/// gRPC paths (`/package.Service/Method`) of every RPC in `package`.
fn method_paths(package: &str) -> Vec<String> {
    let mut paths = Vec::new();
    for file in descriptor_set().file {
        if file.package() != package {
            continue;
        }
        for s in &file.service {
            for m in &s.method {
                paths.push(format!("/{package}.{}/{}", s.name(), m.name()));
            }
        }
    }
    paths
}

#[test]
fn etcd_packages_match_etcd_3_5_exactly() {
    let golden: Vec<&str> = include_str!("golden/etcd_v3_5.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let ours = render(&["mvccpb", "authpb", "etcdserverpb"]);
    let missing: Vec<&&str> = golden
        .iter()
        .filter(|l| !ours.iter().any(|o| o == *l))
        .collect();
    let extra: Vec<&String> = ours
        .iter()
        .filter(|o| !golden.contains(&o.as_str()))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "descriptor differs from etcd 3.5\nmissing:\n{missing:#?}\nextra:\n{extra:#?}"
    );
}

/// The 39 RPCs of etcd 3.4, which every 3.4 client may call.
const ETCD_3_4_RPCS: [&str; 39] = [
    "/etcdserverpb.KV/Range",
    "/etcdserverpb.KV/Put",
    "/etcdserverpb.KV/DeleteRange",
    "/etcdserverpb.KV/Txn",
    "/etcdserverpb.KV/Compact",
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseGrant",
    "/etcdserverpb.Lease/LeaseRevoke",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Lease/LeaseTimeToLive",
    "/etcdserverpb.Lease/LeaseLeases",
    "/etcdserverpb.Cluster/MemberAdd",
    "/etcdserverpb.Cluster/MemberRemove",
    "/etcdserverpb.Cluster/MemberUpdate",
    "/etcdserverpb.Cluster/MemberList",
    "/etcdserverpb.Cluster/MemberPromote",
    "/etcdserverpb.Maintenance/Alarm",
    "/etcdserverpb.Maintenance/Status",
    "/etcdserverpb.Maintenance/Defragment",
    "/etcdserverpb.Maintenance/Hash",
    "/etcdserverpb.Maintenance/HashKV",
    "/etcdserverpb.Maintenance/Snapshot",
    "/etcdserverpb.Maintenance/MoveLeader",
    "/etcdserverpb.Auth/AuthEnable",
    "/etcdserverpb.Auth/AuthDisable",
    "/etcdserverpb.Auth/Authenticate",
    "/etcdserverpb.Auth/UserAdd",
    "/etcdserverpb.Auth/UserGet",
    "/etcdserverpb.Auth/UserList",
    "/etcdserverpb.Auth/UserDelete",
    "/etcdserverpb.Auth/UserChangePassword",
    "/etcdserverpb.Auth/UserGrantRole",
    "/etcdserverpb.Auth/UserRevokeRole",
    "/etcdserverpb.Auth/RoleAdd",
    "/etcdserverpb.Auth/RoleGet",
    "/etcdserverpb.Auth/RoleList",
    "/etcdserverpb.Auth/RoleDelete",
    "/etcdserverpb.Auth/RoleGrantPermission",
    "/etcdserverpb.Auth/RoleRevokePermission",
];

#[test]
fn every_etcd_3_4_rpc_is_served_plus_the_3_5_additions() {
    let ours = method_paths("etcdserverpb");
    for path in ETCD_3_4_RPCS {
        assert!(ours.iter().any(|p| p == path), "missing {path}");
    }
    let mut additions: Vec<&str> = ours
        .iter()
        .map(String::as_str)
        .filter(|p| !ETCD_3_4_RPCS.contains(p))
        .collect();
    additions.sort_unstable();
    assert_eq!(
        additions,
        [
            "/etcdserverpb.Auth/AuthStatus",
            "/etcdserverpb.Maintenance/Downgrade"
        ]
    );
}

#[test]
fn streaming_shapes_of_etcd_rpcs() {
    let lines = render(&["etcdserverpb"]);
    for expected in [
        "rpc etcdserverpb.Watch/Watch stream WatchRequest -> stream WatchResponse",
        "rpc etcdserverpb.Lease/LeaseKeepAlive stream LeaseKeepAliveRequest -> stream LeaseKeepAliveResponse",
        "rpc etcdserverpb.Maintenance/Snapshot SnapshotRequest -> stream SnapshotResponse",
        "rpc etcdserverpb.KV/Compact CompactionRequest -> CompactionResponse",
    ] {
        assert!(lines.iter().any(|l| l == expected), "missing: {expected}");
    }
}

#[test]
fn sett_raft_transport_service() {
    assert_eq!(
        method_paths("sett.raft.v1"),
        [
            "/sett.raft.v1.Raft/AppendEntries",
            "/sett.raft.v1.Raft/Vote",
            "/sett.raft.v1.Raft/InstallSnapshot",
            "/sett.raft.v1.Raft/Forward",
            "/sett.raft.v1.Raft/ReadIndex",
            "/sett.raft.v1.Raft/Publish",
            "/sett.raft.v1.Raft/TakeOver",
        ]
    );
    let lines = render(&["sett.raft.v1"]);
    assert!(lines.contains(
        &"rpc sett.raft.v1.Raft/InstallSnapshot stream InstallSnapshotRequest -> InstallSnapshotResponse"
            .to_owned()
    ));
}

#[test]
fn sett_native_service() {
    assert_eq!(
        method_paths("sett.v1"),
        [
            "/sett.v1.Sett/Begin",
            "/sett.v1.Sett/Get",
            "/sett.v1.Sett/Range",
            "/sett.v1.Sett/Commit",
            "/sett.v1.Sett/Rollback",
        ]
    );
}

#[test]
fn generated_service_names_match_the_descriptor() {
    use sett_proto::etcdserverpb::{
        auth_server, cluster_server, kv_server, lease_server, maintenance_server, watch_server,
    };
    assert_eq!(kv_server::SERVICE_NAME, "etcdserverpb.KV");
    assert_eq!(watch_server::SERVICE_NAME, "etcdserverpb.Watch");
    assert_eq!(lease_server::SERVICE_NAME, "etcdserverpb.Lease");
    assert_eq!(cluster_server::SERVICE_NAME, "etcdserverpb.Cluster");
    assert_eq!(maintenance_server::SERVICE_NAME, "etcdserverpb.Maintenance");
    assert_eq!(auth_server::SERVICE_NAME, "etcdserverpb.Auth");
    assert_eq!(
        sett_proto::sett::raft::v1::raft_server::SERVICE_NAME,
        "sett.raft.v1.Raft"
    );
    assert_eq!(
        sett_proto::sett::v1::sett_server::SERVICE_NAME,
        "sett.v1.Sett"
    );
}

#[test]
fn descriptor_set_is_self_contained_for_reflection() {
    let set = descriptor_set();
    let names: Vec<&str> = set.file.iter().map(|f| f.name()).collect();
    for file in &set.file {
        for dep in &file.dependency {
            assert!(
                names.contains(&dep.as_str()),
                "{} imports missing {dep}",
                file.name()
            );
        }
    }
    for expected in [
        "etcd/mvccpb/kv.proto",
        "etcd/authpb/auth.proto",
        "etcd/etcdserverpb/rpc.proto",
        "sett/raft/v1/raft.proto",
        "sett/v1/sett.proto",
    ] {
        assert!(names.contains(&expected), "missing {expected}");
    }
}
