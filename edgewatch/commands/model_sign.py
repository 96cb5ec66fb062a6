"""``edgewatch model keygen|sign|verify``: Ed25519 signatures over a model's graph and whole card."""

from __future__ import annotations

from pathlib import Path

import click

from edgewatch.agent.lifecycle.signing import (MAX_RELEASE, generate_keypair, load_private_key, load_trust_keys,
                                     read_signature, sign_bytes, verify_bytes)
from edgewatch.errors import BadModelFile
from edgewatch.files import write_bytes


@click.command("keygen")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key file to write (mode 0600); the public key goes to OUTPUT.pub.")
@click.option("--force", is_flag=True, help="Replace an existing key pair.")
def keygen(output: Path, force: bool) -> None:
    """Write a new Ed25519 key pair for signing models.

    Keep the private key where models are released (encrypted when
    $EDGEWATCH_KEY_PASSPHRASE is set); copy OUTPUT.pub to every agent and
    start them with --trust-key OUTPUT.pub.
    """
    key = generate_keypair(output, overwrite=force)
    click.echo(f"wrote private key {output} (0600) and public key {key.source}; key id {key.key_id}")


@click.command("sign")
@click.argument("model_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", "key_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Private key from 'edgewatch model keygen'.")
@click.option("-o", "--output", "output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Signed model file to write (may be MODEL itself).")
@click.option("--signer", default=None, help="Who signs, as verify and the agent will show it (default user@host).")
@click.option("--release", type=click.IntRange(min=1, max=MAX_RELEASE), default=None,
              help="Release number signed into the file (default: the signing time in nanoseconds). Agents with "
                   "--trust-key refuse a release lower than one they have run; number every release yourself "
                   "or never (a small number is older than any default one).")
def sign(model_path: Path, key_path: Path, output: Path, signer: str | None, release: int | None) -> None:
    """Sign MODEL's graph and whole card as a new release; any later edit of either makes agents refuse it.

    Sign last: quantizing, converting or re-saving the file afterwards may
    change its bytes and so invalidate the signature. Re-signing an older
    file makes it a new release: the way to bring it back to agents that
    have run a newer one (see also 'edgewatch model rollback --key').
    """
    private = load_private_key(key_path)
    data = sign_bytes(model_path.read_bytes(), private, signer=signer, source=str(model_path), release=release)
    write_bytes(output, data)
    sig = read_signature(data, str(output))
    assert sig is not None
    click.echo(f"signed {output} as {sig.signer!r} with key {sig.key_id}, release {sig.release}")


@click.command("verify")
@click.argument("model_path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--trust-key", "trust_keys", multiple=True, required=True,
              type=click.Path(dir_okay=False, path_type=Path), help="Trusted public key (repeatable).")
def verify(model_path: Path, trust_keys: tuple[Path, ...]) -> None:
    """Say who signed MODEL and its release, or exit 3 with the reason it would be refused.

    Refused: unsigned, signed by a key not given with --trust-key, or its card
    or graph changed after signing.
    """
    try:
        data = model_path.read_bytes()
    except OSError as exc:
        raise BadModelFile(f"cannot read model file {model_path}: {exc.strerror}") from None
    verified = verify_bytes(data, load_trust_keys(trust_keys), str(model_path))
    click.echo(f"{model_path}: {verified.describe()}")
