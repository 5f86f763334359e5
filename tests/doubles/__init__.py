"""Test doubles of AWS services that keep moto's data semantics and add what moto leaves out."""
