using ILGPU;
using ILGPU.Runtime;

namespace Tp7.Engine.Kernels;

// Data movement without arithmetic: Concat and Split (both a copy of row blocks between a tensor and a slab of
// another along one axis) and Transpose (a strided gather). Forward only.

/// <summary>
/// A copy of <see cref="Rows"/> rows of <see cref="RowLength"/> elements: row r goes from
/// src[SrcOffset + r·SrcStride ..] to dst[DstOffset + r·DstStride ..]. Concat along an axis writes each input as
/// one such block (rows = product of the dims before the axis); Split reads each output as one.
/// </summary>
public readonly record struct BlockCopyShape(long Rows, long RowLength, long DstStride, long DstOffset, long SrcStride, long SrcOffset)
{
    public long Elements => Rows * RowLength;
    public double Bytes => 8.0 * Elements;

    /// <summary>The block that places input <paramref name="part"/> (axis length <paramref name="partAxis"/>) at
    /// <paramref name="axisOffset"/> along the concatenated axis of length <paramref name="totalAxis"/>.</summary>
    public static BlockCopyShape Concat(long outer, long inner, int totalAxis, int axisOffset, int partAxis)
        => new(outer, partAxis * inner, totalAxis * inner, axisOffset * inner, partAxis * inner, 0);

    /// <summary>The block that reads output part (axis length <paramref name="partAxis"/>, at <paramref name="axisOffset"/>) out of the whole.</summary>
    public static BlockCopyShape Split(long outer, long inner, int totalAxis, int axisOffset, int partAxis)
        => new(outer, partAxis * inner, partAxis * inner, 0, totalAxis * inner, axisOffset * inner);

    internal void CheckLengths(long dst, long src)
    {
        if (Rows < 0 || RowLength < 0) throw new ArgumentException($"block copy: negative size {this}");
        if (Elements == 0) return;
        Check.AtLeast("dst", dst, DstOffset + (Rows - 1) * DstStride + RowLength, this);
        Check.AtLeast("src", src, SrcOffset + (Rows - 1) * SrcStride + RowLength, this);
    }
}

// ===== Host twin =====
public static partial class Layout
{
    /// <summary>Copies the block's rows (in parallel when there are many elements).</summary>
    public static unsafe void BlockCopyHost(Span<float> dst, ReadOnlySpan<float> src, BlockCopyShape s)
    {
        s.CheckLengths(dst.Length, src.Length);
        if (s.Elements == 0) return;
        if (s.Elements < 1 << 16 || s.Rows == 1)
        {
            for (long r = 0; r < s.Rows; r++)
                src.Slice((int)(s.SrcOffset + r * s.SrcStride), (int)s.RowLength).CopyTo(dst.Slice((int)(s.DstOffset + r * s.DstStride), (int)s.RowLength));
            return;
        }
        fixed (float* pd = dst) fixed (float* ps = src)
        {
            nint dp = (nint)pd, sp = (nint)ps;
            Parallel.For(0L, s.Rows, r =>
                new ReadOnlySpan<float>((float*)sp + s.SrcOffset + r * s.SrcStride, (int)s.RowLength)
                    .CopyTo(new Span<float>((float*)dp + s.DstOffset + r * s.DstStride, (int)s.RowLength)));
        }
    }

    /// <summary>y = x read through <paramref name="layout"/>'s A strides (a transpose: <see cref="StridedLayout.Transpose"/>).</summary>
    /// <remarks>Rows of the collapsed layout in parallel; a row whose innermost stride is 1 (last axis kept) is one copy.</remarks>
    public static unsafe void GatherHost(Span<float> y, ReadOnlySpan<float> x, StridedLayout layout)
    {
        Broadcast.CheckLengths(y.Length, x.Length, 1, layout);
        long total = layout.Elements;
        if (total == 0) return;
        int inner = layout.Inner;
        long step = layout.AStrides[^1], rows = total / inner;
        fixed (float* py = y) fixed (float* px = x)
        {
            nint yp = (nint)py, xp = (nint)px;
            void Rows(long r0, long r1)
            {
                float* yo = (float*)yp, xi = (float*)xp;
                for (long r = r0; r < r1; r++)
                {
                    long src = layout.RowOffsets(r).A;
                    float* d = yo + r * inner;
                    if (step == 1) new ReadOnlySpan<float>(xi + src, inner).CopyTo(new Span<float>(d, inner));
                    else for (int j = 0; j < inner; j++) d[j] = xi[src + j * step];
                }
            }
            long rowsPerTask = Math.Max(1, (1 << 16) / inner);
            if (total < 1 << 16) Rows(0, rows);
            else Parallel.For(0, (int)((rows + rowsPerTask - 1) / rowsPerTask), c => Rows(c * rowsPerTask, Math.Min(rows, (c + 1) * rowsPerTask)));
        }
    }
}




// ===== ILGPU kernels =====

/// <summary>Block copies (Concat, Split) and strided gathers (Transpose) on an ILGPU accelerator, grid-stride over the output.</summary>
public sealed class LayoutGpu
{
    private readonly Accelerator _acc;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, long, long, long, long, long, long> _blockCopy;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, StridedArgs> _gather;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, FastDivmod, int, int, int, int, int> _blockCopy32;
    private readonly Action<KernelConfig, ArrayView<float>, ArrayView<float>, StridedArgs32> _gather32;

    /// <summary>
    /// Forces the general kernels (64-bit indices) that tensors of 2^31 elements or more take, so tests cover them on
    /// small shapes.
    /// </summary>
    public bool UseGeneralKernels { get; set; }

    public LayoutGpu(Accelerator accelerator)
    {
        _acc = accelerator;
        _blockCopy32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, FastDivmod, int, int, int, int, int>(BlockCopy32Kernel);
        _gather32 = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, StridedArgs32>(Gather32Kernel);
        _blockCopy = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, long, long, long, long, long, long>(BlockCopyKernel);
        _gather = accelerator.LoadStreamKernel<ArrayView<float>, ArrayView<float>, StridedArgs>(GatherKernel);
    }

    public void BlockCopy(ArrayView<float> dst, ArrayView<float> src, BlockCopyShape s)
    {
        s.CheckLengths(dst.Length, src.Length);
        if (s.Elements == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && KernelIndex.Fits32(s.Elements) && KernelIndex.Fits32(dst.Length) && KernelIndex.Fits32(src.Length))
            _blockCopy32(Accelerators.GridStride(_acc, s.Elements, gs), dst, src, new FastDivmod((int)s.RowLength),
                (int)s.Rows, (int)s.DstStride, (int)s.DstOffset, (int)s.SrcStride, (int)s.SrcOffset);
        else _blockCopy(Accelerators.GridStride(_acc, s.Elements, gs), dst, src, s.Rows, s.RowLength, s.DstStride, s.DstOffset, s.SrcStride, s.SrcOffset);
    }

    /// <summary>y = x read through the layout's A strides, as <see cref="Layout.GatherHost"/>.</summary>
    public void Gather(ArrayView<float> y, ArrayView<float> x, StridedLayout layout)
    {
        Broadcast.CheckLengths(y.Length, x.Length, 1, layout);
        if (layout.Elements == 0) return;
        int gs = Accelerators.GroupSize(_acc, Accelerators.DefaultGroupSize);
        if (!UseGeneralKernels && StridedArgs32.Fits(layout, x.Length, 1))
            _gather32(Accelerators.GridStride(_acc, layout.Elements, gs), y, x, new StridedArgs32(layout));
        else _gather(Accelerators.GridStride(_acc, layout.Elements, gs), y, x, new StridedArgs(layout));
    }

    /// <summary><see cref="BlockCopyKernel"/> with 32-bit indices (block and both buffers under 2^31 elements) and the
    /// row found by a multiply-shift.</summary>
    private static void BlockCopy32Kernel(ArrayView<float> dst, ArrayView<float> src, FastDivmod rowLength, int rows,
        int dstStride, int dstOffset, int srcStride, int srcOffset)
    {
        int stride = Grid.DimX * Group.DimX, total = rows * rowLength.Divisor;
        for (int i = Grid.GlobalIndex.X; i < total; i += stride)
        {
            int r = rowLength.DivRem(i, out int j);
            dst[dstOffset + r * dstStride + j] = src[srcOffset + r * srcStride + j];
        }
    }

    /// <summary><see cref="GatherKernel"/> with 32-bit indices and multiply-shift coordinates (<see cref="StridedArgs32"/>).</summary>
    private static void Gather32Kernel(ArrayView<float> y, ArrayView<float> x, StridedArgs32 g)
    {
        int n = (int)y.Length, stride = Grid.DimX * Group.DimX;
        for (int i = Grid.GlobalIndex.X; i < n; i += stride)
        {
            g.Offsets(i, out int oa, out _);
            y[i] = x[oa];
        }
    }

    /// <summary>The fields of a <see cref="BlockCopyShape"/> one by one (kernel arguments stay plain scalars).</summary>
    private static void BlockCopyKernel(ArrayView<float> dst, ArrayView<float> src, long rows, long rowLength,
        long dstStride, long dstOffset, long srcStride, long srcOffset)
    {
        long stride = (long)Grid.DimX * Group.DimX, total = rows * rowLength;
        for (long i = Grid.GlobalIndex.X; i < total; i += stride)
        {
            long r = i / rowLength, j = i - r * rowLength;
            dst[dstOffset + r * dstStride + j] = src[srcOffset + r * srcStride + j];
        }
    }

    private static void GatherKernel(ArrayView<float> y, ArrayView<float> x, StridedArgs g)
    {
        long stride = (long)Grid.DimX * Group.DimX;
        for (long i = Grid.GlobalIndex.X; i < y.Length; i += stride)
        {
            g.Offsets(i, out long oa, out _);
            y[i] = x[oa];
        }
    }
}
