//! The counting allocator behind `peak_step_bytes`, alone in its own test binary so no other
//! test allocates while it counts.

use pconv_bench::heap::peak_during;

#[test]
fn the_peak_is_the_largest_holding_not_the_sum_of_allocations() {
    let ((), peak) = peak_during(|| {
        for _ in 0..4 {
            drop(std::hint::black_box(vec![1u8; 1 << 20]));
        }
        let a = std::hint::black_box(vec![1u8; 3 << 20]);
        let mut b = std::hint::black_box(Vec::<u8>::with_capacity(1 << 20));
        b.resize(2 << 20, 1); // a realloc that grows
        drop((a, b));
    });
    // 3 + 2 MiB held at once; the four 1 MiB buffers never overlapped.
    let mib = 1u64 << 20;
    assert!((5 * mib..5 * mib + 64 * 1024).contains(&peak), "{peak}");
    // Nothing allocated: nothing counted.
    let ((), none) = peak_during(|| ());
    assert_eq!(none, 0);
}
