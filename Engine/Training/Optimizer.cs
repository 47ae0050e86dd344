using Tp7.Engine.Devices;
using Tp7.Engine.Graph;
using Tp7.Engine.Kernels;

namespace Tp7.Engine.Training;

/// <summary>
/// An optimiser over a parameter store's trainable block: its state (momentum, or Adam's two moments) mirrors that
/// block, so a step is one launch over flat vectors. Formulas are PyTorch 1.13's (see <see cref="Optimizers"/>).
/// </summary>
public abstract class Optimizer : IDisposable
{
    protected ParameterStore Store { get; }
    /// <summary>Optimiser steps taken (Adam's t; part of a checkpoint).</summary>
    public int Steps { get; protected set; }
    /// <summary>State vectors by name, each as long as the trainable block (saved in checkpoints).</summary>
    public abstract IReadOnlyList<(string Name, DeviceTensor Data)> State { get; }

    protected Optimizer(ParameterStore store)
    {
        if (store.Grads == null) throw new ArgumentException("no trainable parameters: call SetTrainable first");
        Store = store;
    }

    protected DeviceTensor NewState()
    {
        var t = Store.Device.Allocate(Store.TrainableCount);
        Store.Device.Clear(t);
        return t;
    }

    protected DeviceTensor Params => Store.Block.Slice(Store.TrainableOffset, Store.TrainableCount);

    /// <summary>One update of every trainable parameter from its gradient, at learning rate <paramref name="lr"/>.</summary>
    public void Step(double lr)
    {
        StepCore(lr);
        Store.MarkChanged();
    }

    protected abstract void StepCore(double lr);

    /// <summary>Restores the step count (state vectors are written through <see cref="State"/>).</summary>
    public void Restore(int steps) => Steps = steps;

    public void Dispose()
    {
        foreach (var (_, t) in State) t.Dispose();
        GC.SuppressFinalize(this);
    }

    public static Optimizer Create(string name, ParameterStore store, double momentum, double weightDecay, bool nesterov = false)
        => name switch
        {
            "sgd" => new Sgd(store, (float)momentum, (float)weightDecay, nesterov),
            "adamw" => new AdamW(store, (float)weightDecay),
            _ => throw new ArgumentException($"--optimizer: '{name}' is not one of sgd, adamw"),
        };
}

/// <summary>torch.optim.SGD with momentum (dampening 0), optional Nesterov, and L2 weight decay added to the gradient.</summary>
public sealed class Sgd : Optimizer
{
    readonly float momentum, weightDecay;
    readonly bool nesterov;
    readonly DeviceTensor? buffer;

    public Sgd(ParameterStore store, float momentum, float weightDecay, bool nesterov) : base(store)
    {
        if (momentum < 0 || weightDecay < 0) throw new ArgumentException("--momentum and --wd must be >= 0");
        if (nesterov && momentum <= 0) throw new ArgumentException("Nesterov momentum needs --momentum > 0");
        this.momentum = momentum; this.weightDecay = weightDecay; this.nesterov = nesterov;
        if (momentum != 0) buffer = NewState();
    }

    public override IReadOnlyList<(string Name, DeviceTensor Data)> State => buffer != null ? [("momentum_buffer", buffer)] : [];

    protected override void StepCore(double lr)
    {
        var a = new SgdArgs((float)lr, momentum, weightDecay, nesterov);
        var grads = Store.Grads!;
        if (Store.Device is HostDevice)
            Optimizers.SgdStepHost(HostDevice.Span(Params), HostDevice.Span(grads), buffer != null ? HostDevice.Span(buffer) : [], a);
        else
        {
            var d = (IlgpuDevice)Store.Device;
            d.Kernels(acc => new OptimizersGpu(acc)).SgdStep(IlgpuDevice.View(Params), IlgpuDevice.View(grads),
                buffer != null ? IlgpuDevice.View(buffer) : IlgpuDevice.View(grads).SubView(0, 1), a);
        }
        Steps++;
    }
}

/// <summary>torch.optim.AdamW (decoupled weight decay, bias-corrected moments, amsgrad off).</summary>
public sealed class AdamW : Optimizer
{
    readonly float weightDecay;
    readonly DeviceTensor m, v;
    public float Beta1 { get; init; } = 0.9f;
    public float Beta2 { get; init; } = 0.999f;
    public float Eps { get; init; } = 1e-8f;

    public AdamW(ParameterStore store, float weightDecay) : base(store)
    {
        if (weightDecay < 0) throw new ArgumentException("--wd must be >= 0");
        this.weightDecay = weightDecay;
        m = NewState();
        v = NewState();
    }

    public override IReadOnlyList<(string Name, DeviceTensor Data)> State => [("exp_avg", m), ("exp_avg_sq", v)];

    protected override void StepCore(double lr)
    {
        Steps++;
        var a = new AdamWArgs((float)lr, Beta1, Beta2, Eps, weightDecay, Steps);
        var grads = Store.Grads!;
        if (Store.Device is HostDevice)
            Optimizers.AdamWStepHost(HostDevice.Span(Params), HostDevice.Span(grads), HostDevice.Span(m), HostDevice.Span(v), a);
        else
            ((IlgpuDevice)Store.Device).Kernels(acc => new OptimizersGpu(acc))
                .AdamWStep(IlgpuDevice.View(Params), IlgpuDevice.View(grads), IlgpuDevice.View(m), IlgpuDevice.View(v), a);
    }
}
