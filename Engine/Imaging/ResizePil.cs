namespace Tp7.Engine.Imaging;

/// <summary>Hands the resampler one source row at a time: (width * 3) bytes, R G B interleaved.</summary>
/// <remarks>Lets the resampler read a decoder's own row buffers (or convert 16-bit rows on the fly)
/// without first copying the whole image into one contiguous array.</remarks>
public delegate ReadOnlySpan<byte> RgbRowSource(int y);

/// <summary>
/// Pillow's <c>Image.resize((w, h), Image.BILINEAR)</c> on 8-bit RGB, bit for bit.
/// </summary>
/// <remarks>
/// Algorithm of Pillow 9.x <c>libImaging/Resample.c</c> (ImagingResample with the full-image box):
/// a separable triangle filter whose support (1.0) is widened by the downscale factor, so shrinking
/// averages every covered source pixel (antialiasing). Per output index the coefficients are
/// evaluated in double, normalised to sum 1, then rounded to fixed point with
/// PRECISION_BITS = 32 - 8 - 2. The horizontal pass runs first, over only the source rows the
/// vertical pass will read, and rounds and clips to uint8; the vertical pass reads that uint8
/// intermediate. An axis whose size does not change is not resampled at all.
/// One instance holds the coefficient tables for one (input size, output size) pair and is
/// immutable, so it can be shared between threads.
/// </remarks>
public sealed class ResizePil
{
    private const int PrecisionBits = 32 - 8 - 2;

    public int InWidth { get; }
    public int InHeight { get; }
    public int OutWidth { get; }
    public int OutHeight { get; }

    private readonly Axis _horizontal;
    private readonly Axis _vertical;

    public ResizePil(int inWidth, int inHeight, int outWidth, int outHeight)
    {
        if (inWidth <= 0 || inHeight <= 0 || outWidth <= 0 || outHeight <= 0)
            throw new ArgumentException($"resize {inWidth}x{inHeight} -> {outWidth}x{outHeight}: sizes must be positive");
        InWidth = inWidth;
        InHeight = inHeight;
        OutWidth = outWidth;
        OutHeight = outHeight;
        _horizontal = Axis.Create(inWidth, outWidth);
        _vertical = Axis.Create(inHeight, outHeight);
    }

    /// <summary>Resizes a whole image (a new buffer).</summary>
    public static Rgb24Image Resize(Rgb24Image source, int outWidth, int outHeight)
    {
        var result = new Rgb24Image(outWidth, outHeight);
        new ResizePil(source.Width, source.Height, outWidth, outHeight).Apply(source.Pixels, result.Pixels);
        return result;
    }

    /// <param name="source">(InHeight, InWidth, 3) uint8.</param>
    /// <param name="destination">(OutHeight, OutWidth, 3) uint8.</param>
    public void Apply(ReadOnlySpan<byte> source, Span<byte> destination)
    {
        long expected = (long)InWidth * InHeight * 3;
        if (source.Length != expected)
            throw new ArgumentException($"resize source: {source.Length} bytes, expected {expected} for {InWidth}x{InHeight} RGB");
        unsafe
        {
            fixed (byte* p = source)
            {
                // The delegate must not capture a span, so it captures the pinned pointer instead.
                byte* basePtr = p;
                int stride = InWidth * 3;
                Apply(y => new ReadOnlySpan<byte>(basePtr + (long)y * stride, stride), destination);
            }
        }
    }

    /// <param name="rows">Source rows, each (InWidth, 3) uint8; rows are requested in increasing order.</param>
    /// <param name="destination">(OutHeight, OutWidth, 3) uint8.</param>
    public void Apply(RgbRowSource rows, Span<byte> destination)
    {
        long expected = (long)OutWidth * OutHeight * 3;
        if (destination.Length != expected)
            throw new ArgumentException($"resize destination: {destination.Length} bytes, expected {expected} for {OutWidth}x{OutHeight} RGB");

        bool needHorizontal = OutWidth != InWidth;
        bool needVertical = OutHeight != InHeight;
        int rowBytes = OutWidth * 3;

        if (!needHorizontal && !needVertical)
        {
            for (int y = 0; y < InHeight; y++)
                rows(y).CopyTo(destination.Slice(y * rowBytes, rowBytes));
            return;
        }
        if (!needVertical)
        {
            for (int y = 0; y < InHeight; y++)
                HorizontalRow(rows(y), destination.Slice(y * rowBytes, rowBytes));
            return;
        }

        // Source rows the vertical pass reads: [yFirst, yLast).
        int yFirst = _vertical.Start[0];
        int yLast = _vertical.Start[OutHeight - 1] + _vertical.Count[OutHeight - 1];
        int tempRows = yLast - yFirst;
        int tempRowBytes = OutWidth * 3;   // == InWidth * 3 when the horizontal pass is skipped
        byte[] temp = System.Buffers.ArrayPool<byte>.Shared.Rent(tempRows * tempRowBytes);
        try
        {
            // (tempRows, OutWidth, 3) uint8: horizontally resampled rows yFirst..yLast-1.
            Span<byte> tempSpan = temp.AsSpan(0, tempRows * tempRowBytes);
            for (int y = 0; y < tempRows; y++)
            {
                Span<byte> dst = tempSpan.Slice(y * tempRowBytes, tempRowBytes);
                if (needHorizontal) HorizontalRow(rows(y + yFirst), dst);
                else rows(y + yFirst).CopyTo(dst);
            }
            Vertical(tempSpan, yFirst, destination);
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(temp);
        }
    }

    // ImagingResampleHorizontal_8bpc for one row. Pointers because this loop is most of the work on a
    // large photo (taps ~ 2 x downscale factor per output pixel) and the JIT keeps the bounds checks here.
    private unsafe void HorizontalRow(ReadOnlySpan<byte> src, Span<byte> dst)
    {
        if (src.Length < InWidth * 3)
            throw new ArgumentException($"resize source row: {src.Length} bytes, expected {InWidth * 3}");
        Axis a = _horizontal;
        int ksize = a.KSize;
        const int half = 1 << (PrecisionBits - 1);
        fixed (byte* s = src)
        fixed (byte* d = dst)
        fixed (int* kk = a.K)
        fixed (int* start = a.Start)
        fixed (int* count = a.Count)
        {
            for (int xx = 0; xx < OutWidth; xx++)
            {
                int s0 = half, s1 = half, s2 = half;
                byte* p = s + start[xx] * 3;
                int* k = kk + xx * ksize;
                int n = count[xx];
                for (int x = 0; x < n; x++, p += 3)
                {
                    int w = k[x];
                    s0 += p[0] * w;
                    s1 += p[1] * w;
                    s2 += p[2] * w;
                }
                d[xx * 3] = Clip8(s0);
                d[xx * 3 + 1] = Clip8(s1);
                d[xx * 3 + 2] = Clip8(s2);
            }
        }
    }

    // ImagingResampleVertical_8bpc; temp holds source rows from yFirst on. Accumulating row by row
    // into an int buffer keeps memory access sequential and lets the multiply-add run on SIMD
    // vectors (bytes widened to ints); integer sums make the order irrelevant to the result.
    private void Vertical(ReadOnlySpan<byte> temp, int yFirst, Span<byte> dst)
    {
        Axis a = _vertical;
        int rowBytes = OutWidth * 3;
        int[] acc = System.Buffers.ArrayPool<int>.Shared.Rent(rowBytes);
        try
        {
            Span<int> sum = acc.AsSpan(0, rowBytes);
            for (int yy = 0; yy < OutHeight; yy++)
            {
                sum.Fill(1 << (PrecisionBits - 1));
                int y0 = a.Start[yy] - yFirst;
                int kOff = yy * a.KSize;
                for (int y = 0; y < a.Count[yy]; y++)
                    MultiplyAdd(sum, temp.Slice((y0 + y) * rowBytes, rowBytes), a.K[kOff + y]);
                Span<byte> outRow = dst.Slice(yy * rowBytes, rowBytes);
                for (int i = 0; i < rowBytes; i++)
                    outRow[i] = Clip8(sum[i]);
            }
        }
        finally
        {
            System.Buffers.ArrayPool<int>.Shared.Return(acc);
        }
    }

    /// <summary>sum[i] += row[i] * w.</summary>
    private static void MultiplyAdd(Span<int> sum, ReadOnlySpan<byte> row, int w)
    {
        int i = 0;
        if (System.Numerics.Vector.IsHardwareAccelerated)
        {
            int lanes = System.Numerics.Vector<byte>.Count;
            int intLanes = System.Numerics.Vector<int>.Count;
            var vw = new System.Numerics.Vector<int>(w);
            Span<System.Numerics.Vector<int>> acc = System.Runtime.InteropServices.MemoryMarshal.Cast<int, System.Numerics.Vector<int>>(sum);
            for (; i + lanes <= row.Length; i += lanes)
            {
                var bytes = new System.Numerics.Vector<byte>(row[i..]);
                System.Numerics.Vector.Widen(bytes, out var lo16, out var hi16);
                System.Numerics.Vector.Widen(lo16, out var q0, out var q1);
                System.Numerics.Vector.Widen(hi16, out var q2, out var q3);
                int v = i / intLanes;
                acc[v] += System.Numerics.Vector.AsVectorInt32(q0) * vw;
                acc[v + 1] += System.Numerics.Vector.AsVectorInt32(q1) * vw;
                acc[v + 2] += System.Numerics.Vector.AsVectorInt32(q2) * vw;
                acc[v + 3] += System.Numerics.Vector.AsVectorInt32(q3) * vw;
            }
        }
        for (; i < row.Length; i++)
            sum[i] += row[i] * w;
    }

    private static byte Clip8(int v)
    {
        if (v >= 1 << PrecisionBits << 8) return 255;
        if (v <= 0) return 0;
        return (byte)(v >> PrecisionBits);
    }

    /// <summary>Coefficients of one axis: per output index, the first source index, the tap count,
    /// and KSize fixed-point taps (precompute_coeffs + normalize_coeffs_8bpc).</summary>
    private sealed class Axis
    {
        public required int KSize { get; init; }
        public required int[] Start { get; init; }
        public required int[] Count { get; init; }
        public required int[] K { get; init; }   // (outSize, KSize)

        public static Axis Create(int inSize, int outSize)
        {
            const double filterSupport = 1.0;   // triangle (bilinear) filter
            // Pillow computes (in1 - in0) in float with in0 = 0, in1 = inSize; exact for any image size.
            double scale = (double)inSize / outSize;
            double filterScale = scale < 1.0 ? 1.0 : scale;
            double support = filterSupport * filterScale;
            int ksize = (int)Math.Ceiling(support) * 2 + 1;

            var start = new int[outSize];
            var count = new int[outSize];
            var k = new int[outSize * ksize];
            var w = new double[ksize];
            double ss = 1.0 / filterScale;
            for (int xx = 0; xx < outSize; xx++)
            {
                double center = (xx + 0.5) * scale;
                // (int) truncates toward zero, as C does; Pillow relies on that for the rounding.
                int xmin = (int)(center - support + 0.5);
                if (xmin < 0) xmin = 0;
                int xmax = (int)(center + support + 0.5);
                if (xmax > inSize) xmax = inSize;
                xmax -= xmin;

                double ww = 0.0;
                for (int x = 0; x < xmax; x++)
                {
                    double t = Math.Abs((x + xmin - center + 0.5) * ss);
                    w[x] = t < 1.0 ? 1.0 - t : 0.0;
                    ww += w[x];
                }
                for (int x = 0; x < xmax; x++)
                {
                    double v = ww != 0.0 ? w[x] / ww : w[x];
                    v *= 1 << PrecisionBits;
                    k[xx * ksize + x] = v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v);
                }
                start[xx] = xmin;
                count[xx] = xmax;
            }
            return new Axis { KSize = ksize, Start = start, Count = count, K = k };
        }
    }
}
