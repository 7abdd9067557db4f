//! Capture filters: tcpdump syntax compiled to classic BPF by libpcap (the `pcap` crate,
//! behind the `libpcap` cargo feature, on by default), or `tcpdump -ddd` output given as is.
//! The program is compiled for what the socket sees: Ethernet frames on a named interface,
//! packets from the network header on `any` (cooked, DLT_RAW).

/// One classic BPF instruction (`struct sock_filter`).
pub type Insn = libc::sock_filter;

/// Why a filter was refused.
#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[cfg(feature = "libpcap")]
    #[error("bad capture filter {0:?}: {1}")]
    Compile(String, String),
    #[cfg(not(feature = "libpcap"))]
    #[error(
        "capture filter {0:?}: tcpdump syntax needs the `libpcap` feature; pass `tcpdump -ddd` output instead"
    )]
    NoLibpcap(String),
}

/// `tcpdump -ddd` output: a count, then that many `code jt jf k` lines (or `,`-separated).
fn parse_ddd(text: &str) -> Option<Vec<Insn>> {
    let mut nums = text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|l| !l.is_empty());
    let n: usize = nums.next()?.parse().ok()?;
    let mut v = Vec::with_capacity(n.min(4096));
    for line in nums {
        let p: Vec<u32> = line
            .split_whitespace()
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let [code, jt, jf, k] = p[..] else {
            return None;
        };
        v.push(Insn {
            code: u16::try_from(code).ok()?,
            jt: u8::try_from(jt).ok()?,
            jf: u8::try_from(jf).ok()?,
            k,
        });
    }
    (v.len() == n && n > 0).then_some(v)
}

/// Compile `expr` for a socket that sees Ethernet frames (`cooked == false`) or network
/// packets (`cooked`).
pub fn compile(expr: &str, cooked: bool) -> Result<Vec<Insn>, BpfError> {
    if let Some(p) = parse_ddd(expr) {
        return Ok(p);
    }
    compile_tcpdump(expr, cooked)
}

#[cfg(feature = "libpcap")]
fn compile_tcpdump(expr: &str, cooked: bool) -> Result<Vec<Insn>, BpfError> {
    let err = |e: pcap::Error| BpfError::Compile(expr.to_string(), e.to_string());
    // DLT_EN10MB (1) or DLT_RAW (12).
    let dead = pcap::Capture::dead(pcap::Linktype(if cooked { 12 } else { 1 })).map_err(err)?;
    let prog = dead.compile(expr, true).map_err(err)?;
    // The crate shows each instruction as `code jt jf k`.
    let text: Vec<String> = prog
        .get_instructions()
        .iter()
        .map(|i| i.to_string())
        .collect();
    let ddd = format!("{}\n{}", text.len(), text.join("\n"));
    parse_ddd(&ddd).ok_or_else(|| BpfError::Compile(expr.to_string(), "empty program".into()))
}

#[cfg(not(feature = "libpcap"))]
fn compile_tcpdump(expr: &str, _cooked: bool) -> Result<Vec<Insn>, BpfError> {
    Err(BpfError::NoLibpcap(expr.to_string()))
}

/// A filter evaluated in user space on spooled packets (export), compiled per link type.
#[cfg(feature = "libpcap")]
pub struct OfflineFilter {
    expr: String,
    programs: Vec<(u16, pcap::BpfProgram)>,
}

#[cfg(feature = "libpcap")]
impl OfflineFilter {
    /// Checks the expression once (for Ethernet) so a bad one is refused up front.
    pub fn new(expr: &str) -> Result<OfflineFilter, BpfError> {
        let mut f = OfflineFilter {
            expr: expr.to_string(),
            programs: Vec::new(),
        };
        f.program(1)?;
        Ok(f)
    }

    fn program(&mut self, link: u16) -> Result<&pcap::BpfProgram, BpfError> {
        let i = match self.programs.iter().position(|(l, _)| *l == link) {
            Some(i) => i,
            None => {
                let err = |e: pcap::Error| BpfError::Compile(self.expr.clone(), e.to_string());
                let dead = pcap::Capture::dead(pcap::Linktype(i32::from(link))).map_err(err)?;
                let prog = dead.compile(&self.expr, true).map_err(err)?;
                self.programs.push((link, prog));
                self.programs.len() - 1
            }
        };
        Ok(&self.programs[i].1)
    }

    /// Whether a packet of link type `link` matches (a link type the expression cannot be
    /// compiled for matches nothing).
    pub fn matches(&mut self, link: u16, data: &[u8]) -> bool {
        self.program(link).is_ok_and(|p| p.filter(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddd_text_is_taken_as_is() {
        let p = compile("4\n40 0 0 12\n21 0 1 2048\n6 0 0 262144\n6 0 0 0\n", false).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!((p[1].code, p[1].jt, p[1].jf, p[1].k), (21, 0, 1, 2048));
        assert!(parse_ddd("3\n1 2 3 4\n").is_none(), "count mismatch");
        assert!(parse_ddd("1\n1 2 300 4\n").is_none(), "jf out of range");
    }

    #[cfg(feature = "libpcap")]
    #[test]
    fn tcpdump_syntax_compiles_for_both_link_layers() {
        let eth = compile("tcp port 80", false).unwrap();
        let raw = compile("tcp port 80", true).unwrap();
        assert!(!eth.is_empty() && !raw.is_empty());
        // Ethernet programs load the EtherType at offset 12 first; raw ones do not.
        assert_eq!((eth[0].code, eth[0].k), (0x28, 12));
        assert_ne!((raw[0].code, raw[0].k), (0x28, 12));
        let e = compile("tcp port eighty", false).unwrap_err().to_string();
        assert!(
            e.starts_with("bad capture filter \"tcp port eighty\""),
            "{e}"
        );
    }
}
