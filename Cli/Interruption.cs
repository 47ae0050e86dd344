using System.Runtime.InteropServices;

namespace Tp7.Cli;

/// <summary>
/// While alive, Ctrl-C (SIGINT) and SIGTERM (Kubernetes deleting a pod, Slurm's scancel or time limit) cancel
/// <see cref="Token"/> instead of ending the process, so a verb can stop cleanly and say what it kept. A second
/// signal ends the process at once, as it would have without this.
/// </summary>
sealed class Interruption : IDisposable
{
    readonly CancellationTokenSource cts = new();
    readonly PosixSignalRegistration[] registrations;
    volatile string? signal;

    public Interruption()
    {
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => cts.Token;

    /// <summary>SIGINT or SIGTERM once one arrived, else null.</summary>
    public string? Signal => signal;

    /// <summary>The shell's exit status for a process that a signal ended: 128 + its number (SIGINT 130, SIGTERM 143).</summary>
    public int ExitCode => signal == "SIGTERM" ? 143 : 130;

    void Handle(PosixSignalContext context)
    {
        if (cts.IsCancellationRequested) return;
        context.Cancel = true;
        signal = context.Signal == PosixSignal.SIGTERM ? "SIGTERM" : "SIGINT";
        cts.Cancel();
    }

    public void Dispose()
    {
        foreach (var r in registrations) r.Dispose();
        cts.Dispose();
    }
}
