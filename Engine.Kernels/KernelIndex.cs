using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

/// <summary>
/// Division of a non-negative 32-bit index by a divisor fixed for the whole launch, as a multiply-high, an add and a
/// shift (Granlund and Montgomery, "Division by invariant integers using multiplication", PLDI 1994, Figure 4.1,
/// with N = 32; the role CUTLASS's FastDivmod plays). The multiplier and shift are computed once on the host and
/// travel in the kernel's argument struct, so decomposing a flat index into (n, c, h, w) costs a few integer
/// instructions instead of the ~25 of an inlined 32-bit division or the call of ptxas's 64-bit division routine.
/// Exact for every 0 ≤ n &lt; 2^31 and 1 ≤ d &lt; 2^31: with l = ceil(log2 d) and m = floor(2^32 (2^l - d) / d) + 1,
/// t = mulhi(m, n) ≤ n, so t + n &lt; 2^32 and floor(n / d) = (t + n) >> l.
/// </summary>
public readonly struct FastDivmod
{
    public readonly int Divisor;
    public readonly uint Multiplier;
    public readonly int Shift;

    public FastDivmod(int divisor)
    {
        if (divisor <= 0) throw new ArgumentOutOfRangeException(nameof(divisor), divisor, "fast divmod: the divisor must be positive");
        int l = 0;
        while ((1L << l) < divisor) l++;
        Divisor = divisor;
        Multiplier = (uint)(((1UL << 32) * (ulong)((1L << l) - divisor)) / (ulong)divisor + 1);
        Shift = l;
    }

    /// <summary>floor(n / Divisor) for 0 ≤ n &lt; 2^31.</summary>
    public int Div(int n)
    {
        uint t = (uint)(((ulong)Multiplier * (uint)n) >> 32);
        return (int)((t + (uint)n) >> Shift);
    }

    /// <summary>Quotient, and n - quotient·Divisor in <paramref name="rem"/>.</summary>
    public int DivRem(int n, out int rem)
    {
        int q = Div(n);
        rem = n - q * Divisor;
        return q;
    }

    public override string ToString() => $"/{Divisor} (m {Multiplier}, s {Shift})";
}

/// <summary>Four floats moved as one 16-byte load or store (PTX ld/st .v4.f32) where a view is cast to it.</summary>
public struct Float4
{
    public float X, Y, Z, W;

    public Float4(float x, float y, float z, float w) { X = x; Y = y; Z = z; W = w; }
}

/// <summary>Two floats moved as one 8-byte load or store (PTX ld/st .v2.f32): the two taps of a 2x2 pooling window's row.</summary>
public struct Float2
{
    public float X, Y;

    public Float2(float x, float y) { X = x; Y = y; }
}

/// <summary>Host-side checks that pick between a kernel's 32-bit-index, vectorised and general versions.</summary>
public static class KernelIndex
{
    /// <summary>The largest element count or offset the 32-bit-index kernels take.</summary>
    public const long Max32 = int.MaxValue;

    /// <summary>True when every index of a tensor of <paramref name="elements"/> fits a non-negative int.</summary>
    public static bool Fits32(long elements) => elements <= Max32;

    /// <summary>
    /// True when the view starts on a 16-byte boundary of its buffer (buffers themselves are allocated at least 128-byte
    /// aligned by CUDA and OpenCL), so it can be read as <see cref="Float4"/>.
    /// </summary>
    public static bool Aligned16(ArrayView<float> view)
        => ((IContiguousArrayView)view).IndexInBytes % 16 == 0;
}
