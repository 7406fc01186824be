//! `berth-dns`: berth's DNS server as an executable of its own (see
//! `berth::dns::standalone`).

fn main() {
    std::process::exit(berth::dns::standalone::main());
}
