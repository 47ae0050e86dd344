using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace Tp7.Engine.IO;

/// <summary>
/// Widening conversions from the storage types of tensor files to float32. Each vector path gives bit-for-bit
/// the result of the scalar BCL conversion (tests compare all 65,536 half and bfloat16 patterns).
/// </summary>
internal static class TensorConvert
{
    /// <summary>IEEE binary16 → binary32, exact (normals, subnormals, ±0, ±inf; NaN stays NaN with its payload).</summary>
    public static void HalfToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source");
        int n = source.Length, i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            ref float dst = ref MemoryMarshal.GetReference(destination);
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                HalfBitsToSingle(lo).StoreUnsafe(ref dst, (nuint)i);
                HalfBitsToSingle(hi).StoreUnsafe(ref dst, (nuint)(i + 8));
            }
        }
        for (; i < n; i++) destination[i] = (float)BitConverter.UInt16BitsToHalf(source[i]);
    }

    // Moves exponent and mantissa into float position, then rescales by 2^(127-15): that one multiply is exact
    // and turns half subnormals into float normals. Inf/NaN (half exponent 31) instead get the float
    // all-ones exponent. Technique: F. Giesen, "half to float done quick" (2012).
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfBitsToSingle(Vector256<uint> h)
    {
        var shifted = (h & Vector256.Create(0x7fffu)) << 13;
        var rescaled = (shifted.AsSingle() * Vector256.Create(BitConverter.UInt32BitsToSingle(0x7780_0000u))).AsUInt32();
        var infOrNaN = Vector256.Equals(h & Vector256.Create(0x7c00u), Vector256.Create(0x7c00u));
        var magnitude = Vector256.ConditionalSelect(infOrNaN, shifted | Vector256.Create(0x7f80_0000u), rescaled);
        return (magnitude | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>bfloat16 → binary32: bfloat16 is the top half of a float32, so this is exact.</summary>
    public static void BFloat16ToSingle(ReadOnlySpan<ushort> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source");
        int n = source.Length, i = 0;
        if (Vector256.IsHardwareAccelerated && n >= 16)
        {
            ref ushort src = ref MemoryMarshal.GetReference(source);
            ref float dst = ref MemoryMarshal.GetReference(destination);
            for (; i <= n - 16; i += 16)
            {
                var (lo, hi) = Vector256.Widen(Vector256.LoadUnsafe(ref src, (nuint)i));
                (lo << 16).AsSingle().StoreUnsafe(ref dst, (nuint)i);
                (hi << 16).AsSingle().StoreUnsafe(ref dst, (nuint)(i + 8));
            }
        }
        for (; i < n; i++) destination[i] = BitConverter.UInt32BitsToSingle((uint)source[i] << 16);
    }

    /// <summary>binary64 → binary32, rounding to nearest even (values past float range become ±inf).</summary>
    public static void DoubleToSingle(ReadOnlySpan<double> source, Span<float> destination)
    {
        if (destination.Length < source.Length) throw new ArgumentException("destination is shorter than source");
        for (int i = 0; i < source.Length; i++) destination[i] = (float)source[i];
    }
}
