namespace Tp7.Engine.Kernels;

/// <summary>
/// How many cores the host kernels that consult it (the GEMM) may use on the current logical flow of control, so a
/// caller running several jobs at once (the sweep's PCA fits) can give each a share. The limit is an
/// <see cref="AsyncLocal{T}"/>: it follows the caller into awaited code and tasks it starts, and no other thread
/// sees it. A bare <c>Parallel.For</c> ignores the caller's task scheduler (its default options name
/// TaskScheduler.Default), hence an explicit limit rather than a limited scheduler.
/// </summary>
public static class HostThreads
{
    static readonly AsyncLocal<int> limit = new();

    /// <summary>Cores available to a host kernel here: the innermost <see cref="Limit"/> in force, else all.</summary>
    public static int Count => limit.Value is > 0 and var v ? Math.Min(v, Environment.ProcessorCount) : Environment.ProcessorCount;

    /// <summary>Options for a kernel's Parallel.For that stay within <see cref="Count"/> (the defaults when no limit is set).</summary>
    public static ParallelOptions Options => limit.Value > 0 ? new() { MaxDegreeOfParallelism = Count } : Unlimited;

    static readonly ParallelOptions Unlimited = new();

    /// <summary>Limits host kernels to <paramref name="maxThreads"/> cores (0 = no limit) until the scope is disposed.</summary>
    public static Scope Limit(int maxThreads)
    {
        if (maxThreads < 0) throw new ArgumentOutOfRangeException(nameof(maxThreads), maxThreads, "maxThreads must be 0 (all cores) or positive");
        var scope = new Scope(limit.Value);
        if (maxThreads > 0) limit.Value = limit.Value > 0 ? Math.Min(limit.Value, maxThreads) : maxThreads;
        return scope;
    }

    public readonly struct Scope(int previous) : IDisposable
    {
        public void Dispose() => limit.Value = previous;
    }
}
