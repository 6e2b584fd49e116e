//! The call graph: a topological order of the calls, or the cycle that prevents one.
//!
//! Edges come from references (`{user.segment}` in `reco`'s path makes `reco` depend on
//! `user`). The order is only a load-time proof and a tie-break: at run time every call whose
//! dependencies are done starts at once.

/// A topological order of calls `0..deps.len()` (each call after every call it depends on,
/// ties by config order), or one cycle as the list of calls around it (first call repeated at
/// the end).
pub fn order(deps: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = deps.len();
    let mut state = vec![Mark::New; n];
    let mut out = Vec::with_capacity(n);
    let mut stack = Vec::new();
    for start in 0..n {
        visit(start, deps, &mut state, &mut out, &mut stack)?;
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    New,
    Open,
    Done,
}

fn visit(
    call: usize,
    deps: &[Vec<usize>],
    state: &mut [Mark],
    out: &mut Vec<usize>,
    stack: &mut Vec<usize>,
) -> Result<(), Vec<usize>> {
    match state[call] {
        Mark::Done => return Ok(()),
        Mark::Open => {
            let from = stack.iter().position(|&c| c == call).unwrap_or(0);
            let mut cycle = stack[from..].to_vec();
            cycle.push(call);
            return Err(cycle);
        }
        Mark::New => {}
    }
    state[call] = Mark::Open;
    stack.push(call);
    for &dep in &deps[call] {
        if dep < deps.len() {
            visit(dep, deps, state, out, stack)?;
        }
    }
    stack.pop();
    state[call] = Mark::Done;
    out.push(call);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_dependencies_first_and_keeps_config_order_otherwise() {
        // 0 <- 2, 1 independent, 3 <- 0 and 2.
        let deps = vec![vec![], vec![], vec![0], vec![2, 0]];
        assert_eq!(order(&deps), Ok(vec![0, 1, 2, 3]));
        let deps = vec![vec![1], vec![]];
        assert_eq!(order(&deps), Ok(vec![1, 0]));
    }

    #[test]
    fn finds_a_cycle() {
        let deps = vec![vec![], vec![2], vec![3], vec![1]];
        assert_eq!(order(&deps), Err(vec![1, 2, 3, 1]));
        assert_eq!(order(&[vec![0]]), Err(vec![0, 0]));
    }
}
