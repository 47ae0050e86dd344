using System.Collections.Concurrent;
using System.Diagnostics;
using System.Threading.Channels;
using Tp7.Engine.Imaging;

namespace Tp7.Engine.Data;

/// <summary>
/// A batch of preprocessed images. <see cref="Data"/> is (Items.Length, 3, Size, Size) float32.
/// Dispose it once its data has been consumed so the loader can reuse the buffer (optional: an
/// undisposed batch is simply collected).
/// </summary>
public sealed class Batch : IDisposable
{
    private readonly ConcurrentBag<float[]>? _pool;
    private int _disposed;

    public int Index { get; }
    public float[] Data { get; }
    public DatasetItem[] Items { get; }
    public int Count => Items.Length;

    internal Batch(int index, float[] data, DatasetItem[] items, ConcurrentBag<float[]>? pool)
    {
        Index = index;
        Data = data;
        Items = items;
        _pool = pool;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
            _pool?.Add(Data);
    }
}

/// <summary>Counters of one <see cref="BatchLoader.ReadBatches"/> run.</summary>
/// <param name="ImagesPerSecond">Decoded images per wall-clock second since the run started, as the consumer
/// saw them: when the consumer is slower than the decoders this measures the consumer.</param>
/// <param name="ImagesPerWorkerSecond">Decoded images per second of decoder busy time: one core's decode speed.</param>
public sealed record BatchLoaderStats(
    int Decoded, int Skipped, int Workers, double WallSeconds, double ImagesPerSecond, double ImagesPerWorkerSecond);

/// <summary>
/// Decodes and preprocesses images on all cores while the caller computes on earlier batches.
/// </summary>
/// <remarks>
/// Batch b holds items [b·B, (b+1)·B) of the input list, in order, minus those that failed to decode:
/// the result is deterministic whatever the thread timing, at the price of a batch shrinking by one
/// slot per skipped file. Workers pull single images from one queue, so a slow image does not stall a
/// whole batch's worth of cores. At most <c>prefetch</c> batches are being decoded ahead of the one the
/// caller holds, which bounds memory to (prefetch + 1) batch buffers.
/// A file that fails to decode is skipped, listed in <see cref="Skipped"/> with its reason, and the run goes on.
/// </remarks>
public sealed class BatchLoader
{
    private readonly IReadOnlyList<DatasetItem> _items;
    private readonly Preprocessing _p;
    private readonly int _batchSize;
    private readonly int _workers;
    private readonly int _prefetch;
    private readonly ConcurrentBag<float[]> _pool = [];
    private readonly ConcurrentQueue<(int Index, SkippedFile File)> _skipped = new();
    private int _decoded;
    private long _busyTicks;
    private long _startTimestamp;
    private long _endTimestamp;

    private readonly Func<int, float[]>? _allocate;

    /// <param name="allocate">Makes each full-batch buffer (e.g. page-locked memory a GPU copies from asynchronously);
    /// null: ordinary arrays. Buffers are reused through the pool, so it is called about prefetch + 2 times.</param>
    public BatchLoader(IReadOnlyList<DatasetItem> items, Preprocessing p, int batchSize, int workers = 0, int prefetch = 2,
        Func<int, float[]>? allocate = null)
    {
        _allocate = allocate;
        if (batchSize <= 0) throw new ArgumentException($"batch size {batchSize} must be positive");
        if (prefetch < 1) throw new ArgumentException($"prefetch {prefetch} must be at least 1");
        p.Validate();
        _items = items;
        _p = p;
        _batchSize = batchSize;
        _workers = workers > 0 ? workers : Environment.ProcessorCount;
        _prefetch = prefetch;
    }

    public int BatchCount => (_items.Count + _batchSize - 1) / _batchSize;

    /// <summary>Receives each image's decode and preprocess spans (on the worker's thread) when set.</summary>
    public Tp7.Engine.Profiling.ITraceSink? Trace { get; init; }

    /// <summary>Files skipped so far, in input order.</summary>
    public IReadOnlyList<SkippedFile> Skipped => [.. _skipped.OrderBy(s => s.Index).Select(s => s.File)];

    public BatchLoaderStats Stats
    {
        get
        {
            long end = Volatile.Read(ref _endTimestamp);
            long start = Volatile.Read(ref _startTimestamp);
            double wall = start == 0 ? 0 : Stopwatch.GetElapsedTime(start, end != 0 ? end : Stopwatch.GetTimestamp()).TotalSeconds;
            int decoded = Volatile.Read(ref _decoded);
            double busy = Interlocked.Read(ref _busyTicks) / (double)Stopwatch.Frequency;
            return new BatchLoaderStats(decoded, _skipped.Count, _workers, wall,
                wall > 0 ? decoded / wall : 0, busy > 0 ? decoded / busy : 0);
        }
    }

    private sealed class PendingBatch(int index, int first, int count, float[] buffer)
    {
        public readonly int Index = index;
        public readonly int First = first;
        public readonly float[] Buffer = buffer;   // (count, 3, Size, Size)
        public readonly string?[] Failures = new string?[count];
        public int Remaining = count;
        public readonly TaskCompletionSource Done = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>Batches in input order. Enumerate once; stopping early (break, dispose, cancellation)
    /// stops the workers before this returns.</summary>
    public IEnumerable<Batch> ReadBatches(CancellationToken cancellation = default)
    {
        int n = _items.Count, len = _p.TensorLength, batches = BatchCount;
        if (batches == 0) yield break;

        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        var token = cts.Token;
        using var window = new SemaphoreSlim(_prefetch + 1);
        var pending = new PendingBatch?[batches];
        var opened = new TaskCompletionSource[batches];
        for (int b = 0; b < batches; b++) opened[b] = new(TaskCreationOptions.RunContinuationsAsynchronously);
        var queue = Channel.CreateUnbounded<(PendingBatch Batch, int Slot)>(new UnboundedChannelOptions { SingleWriter = true });
        Interlocked.CompareExchange(ref _startTimestamp, Stopwatch.GetTimestamp(), 0);

        var dispatcher = Task.Run(async () =>
        {
            try
            {
                for (int b = 0; b < batches; b++)
                {
                    await window.WaitAsync(token).ConfigureAwait(false);
                    int first = b * _batchSize, count = Math.Min(_batchSize, n - first);
                    var batch = new PendingBatch(b, first, count, RentBuffer(count * len));
                    pending[b] = batch;
                    opened[b].SetResult();
                    for (int s = 0; s < count; s++) queue.Writer.TryWrite((batch, s));
                }
            }
            finally
            {
                queue.Writer.TryComplete();
            }
        }, token);

        var workers = Enumerable.Range(0, _workers).Select(_ => Task.Run(async () =>
        {
            while (await queue.Reader.WaitToReadAsync(token).ConfigureAwait(false))
                while (queue.Reader.TryRead(out var job))
                {
                    token.ThrowIfCancellationRequested();
                    Decode(job.Batch, job.Slot, len);
                }
        }, token)).ToArray();

        try
        {
            for (int b = 0; b < batches; b++)
            {
                WaitFor(opened[b].Task, token);
                var batch = pending[b]!;
                WaitFor(batch.Done.Task, token);
                pending[b] = null;
                Batch result = Assemble(batch, len);
                if (b == batches - 1) Volatile.Write(ref _endTimestamp, Stopwatch.GetTimestamp());
                yield return result;
                window.Release();
            }
        }
        finally
        {
            cts.Cancel();
            // Workers may still be writing into buffers; they stop at the next item.
            try { Task.WaitAll([dispatcher, .. workers]); }
            catch (AggregateException e) when (e.InnerExceptions.All(x => x is OperationCanceledException)) { }
            if (Volatile.Read(ref _endTimestamp) == 0) Volatile.Write(ref _endTimestamp, Stopwatch.GetTimestamp());
        }
    }

    private void Decode(PendingBatch batch, int slot, int len)
    {
        var item = _items[batch.First + slot];
        long t0 = Stopwatch.GetTimestamp();
        try
        {
            ImageLoader.LoadTensor(item.Path, _p, batch.Buffer.AsSpan(slot * len, len), Trace);
            Interlocked.Increment(ref _decoded);
        }
        catch (ImageDecodeException e)
        {
            batch.Failures[slot] = e.Reason;
            _skipped.Enqueue((batch.First + slot, new SkippedFile(item.Path, e.Reason)));
        }
        catch (Exception e)
        {
            // Not a bad file but a bug (ImageLoader turns every file problem into ImageDecodeException):
            // stop the run and tell the consumer, rather than leave it waiting for this batch.
            batch.Done.TrySetException(new InvalidOperationException($"{item.Path}: batch loader failed: {e.Message}", e));
            return;
        }
        Interlocked.Add(ref _busyTicks, Stopwatch.GetTimestamp() - t0);
        if (Interlocked.Decrement(ref batch.Remaining) == 0)
            batch.Done.TrySetResult();
    }

    /// <summary>Drops failed slots. With no failure the rented buffer is handed over as it is.</summary>
    private Batch Assemble(PendingBatch batch, int len)
    {
        int count = batch.Failures.Length;
        var good = Enumerable.Range(0, count).Where(s => batch.Failures[s] is null).ToArray();
        DatasetItem[] items = [.. good.Select(s => _items[batch.First + s])];
        if (good.Length == count)
            return new Batch(batch.Index, batch.Buffer, items, count == _batchSize ? _pool : null);

        var data = new float[good.Length * len];
        for (int k = 0; k < good.Length; k++)
            Array.Copy(batch.Buffer, (long)good[k] * len, data, (long)k * len, len);
        if (batch.Buffer.Length == _batchSize * len) _pool.Add(batch.Buffer);
        return new Batch(batch.Index, data, items, null);
    }

    private float[] RentBuffer(int length)
    {
        // Only full-batch buffers are pooled; the last, shorter batch gets its own.
        if (length != _batchSize * _p.TensorLength) return new float[length];
        return _pool.TryTake(out var buffer) ? buffer : _allocate?.Invoke(length) ?? new float[length];
    }

    /// <summary>Blocks until <paramref name="task"/> completes; a worker's unexpected failure surfaces here.</summary>
    private static void WaitFor(Task task, CancellationToken token)
    {
        try { task.Wait(token); }
        catch (AggregateException e) when (e.InnerExceptions.Count == 1) { throw e.InnerExceptions[0]; }
    }
}
